//! The ovs-ofctl flow syntax formatter (filled in by the syntax work).
