//! The ovs-ofctl flow syntax parser (placeholder until the syntax work lands).

/// Resolves port names in flows.
pub trait PortNames {
    /// Number of the port called `name`.
    fn port_no(&self, name: &str) -> Option<u32>;
    /// Name of port `no`.
    fn port_name(&self, no: u32) -> Option<String>;
}

/// Numbers only.
pub struct NoPortNames;

impl PortNames for NoPortNames {
    fn port_no(&self, _name: &str) -> Option<u32> {
        None
    }
    fn port_name(&self, _no: u32) -> Option<String> {
        None
    }
}

use super::{FlowKey, FlowSpec};

/// Flow-mod command of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowCmd {
    /// add
    Add,
    /// modify
    Modify,
    /// modify_strict
    ModifyStrict,
    /// delete
    Delete,
    /// delete_strict
    DeleteStrict,
    /// dump filter
    Dump,
}

/// A parse error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Column.
    pub column: usize,
    /// Token.
    pub token: String,
    /// Message.
    pub message: String,
}

impl core::fmt::Display for ParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

/// A file parse error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileParseError {
    /// Line.
    pub line: usize,
    /// The error.
    pub error: ParseError,
}

impl core::fmt::Display for FileParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{}:{}: {}",
            self.line, self.error.column, self.error.message
        )
    }
}

fn todo_err() -> ParseError {
    ParseError {
        column: 1,
        token: String::new(),
        message: "parser not available".into(),
    }
}

/// Parses a flow.
pub fn parse_flow(_s: &str, _cmd: FlowCmd, _names: &dyn PortNames) -> Result<FlowSpec, ParseError> {
    Err(todo_err())
}

/// Parses a flow file.
pub fn parse_flow_file(
    _s: &str,
    _names: &dyn PortNames,
) -> Result<Vec<(FlowCmd, FlowSpec)>, FileParseError> {
    Err(FileParseError {
        line: 1,
        error: todo_err(),
    })
}

/// Parses a trace flow.
pub fn parse_trace_flow(_s: &str, _names: &dyn PortNames) -> Result<FlowKey, ParseError> {
    Err(todo_err())
}

/// `table` value of a modify/delete/dump spec that named no table.
pub const ALL_TABLES: u8 = 255;
