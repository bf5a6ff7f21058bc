//! ctl (in progress).
