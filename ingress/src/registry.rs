//! The function registry (`functions.toml` at the workspace root, compiled in): every function
//! once, with what the ingress, the harness and the scripts need to know of it.

use serde::Deserialize;

/// What a function is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Routed through `routes.toml` (an ALB target-group handler).
    Http,
    /// Writes audit batches (invoked by the ingress and the reconciler).
    AuditWriter,
    /// Started by a schedule.
    Scheduled,
    /// A CloudFormation custom resource.
    CustomResource,
}

/// One function.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Function {
    /// Binary name, route target, `<stack>-<name>` on AWS.
    pub name: String,
    /// The crate's directory.
    pub package: String,
    /// Its resource in `template.yaml`.
    pub template: String,
    /// What it is for.
    pub kind: Kind,
    /// Linked into the ingress in embedded mode.
    pub embedded: bool,
    /// Run by the local Lambda emulator.
    pub local_stack: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    functions: Vec<Function>,
}

/// The registry's text, as compiled in.
pub const TEXT: &str = include_str!("../../functions.toml");

/// Parses a registry.
pub fn parse(text: &str) -> Result<Vec<Function>, String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut names = std::collections::BTreeSet::new();
    for f in &file.functions {
        if !names.insert(f.name.as_str()) {
            return Err(format!("function {} is registered twice", f.name));
        }
    }
    Ok(file.functions)
}

/// The compiled-in registry.
pub fn functions() -> Vec<Function> {
    parse(TEXT).unwrap_or_else(|e| panic!("functions.toml: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_registry_parses_and_names_each_function_once() {
        let f = super::functions();
        assert!(f.iter().any(|f| f.name == "echo" && f.embedded));
        assert!(super::parse(&format!("{}\n{}", super::TEXT, "[[functions]]\nname = \"echo\"\npackage = \"x\"\ntemplate = \"X\"\nkind = \"http\"\nembedded = false\nlocal_stack = false\n")).is_err());
    }
}
