//! Key extraction: frame bytes to [`super::FlowKey`] (filled in by the wire work).
