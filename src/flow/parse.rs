//! The ovs-ofctl flow syntax parser (filled in by the syntax work).
