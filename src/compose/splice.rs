//! Whether the digest templates allow the fast path: rendering an edition
//! once with markers in place of the reader's fields and splicing each
//! reader's values in at the markers. Decided from the templates' syntax
//! trees, not from sample renders, so no reader's values can take a branch
//! the markers did not.
//!
//! The splice reproduces a field written out as it is (`{{ subscriber.name }}`,
//! HTML-escaped like Tera does) and a field whose truth alone decides
//! (`{% if subscriber.name %}`, `not`, `and`, `or`): the prerender for readers
//! with a name and the one for readers without take the branch every such
//! reader would. Any other use (a filter, a test, a comparison, `in`,
//! arithmetic, `~`, an argument, `set`, a loop, the whole object, a subscript,
//! a macro body or a filter section around it, `__tera_context`) needs one
//! render per reader.
//!
//! Tera's syntax tree is public but hidden from its documentation; every
//! match below is exhaustive, so a node kind a later Tera adds stops the
//! build here instead of passing unexamined.

use std::collections::HashSet;

use tera::ast::{Expr, ExprVal, LogicOperator, Node};
use tera::Tera;

/// One of the reader's fields as templates name it (`subscriber.email`,
/// `unsubscribe_url`), and whether a marker stands for it in the prerender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderPath {
    pub path: String,
    pub spliced: bool,
}

/// Every use of the reader's fields in the templates `start` and those they
/// reach (parents, includes, macro files) that the splice cannot reproduce,
/// each as `template: what it does` (`digest.html: subscriber.email is
/// tested with ending_with`). Empty when the fast path is exact.
pub fn per_reader_uses(tera: &Tera, start: &[&str], fields: &[ReaderPath]) -> Vec<String> {
    let roots = fields.iter().map(|f| f.path.split('.').next().unwrap_or(&f.path)).collect();
    let mut walk = Walk {
        tera,
        start,
        roots,
        fields,
        template: String::new(),
        wrapped: None,
        queue: Vec::new(),
        seen: HashSet::new(),
        problems: Vec::new(),
    };
    for name in start {
        walk.reach(name);
    }
    while let Some((name, wrapped)) = walk.queue.pop() {
        let Some(template) = tera.templates.get(&name) else {
            // Not loaded: rendering fails the same way on either path.
            continue;
        };
        walk.template = name;
        walk.wrapped = wrapped;
        for parent in &template.parents {
            walk.reach(parent);
        }
        for (file, _) in &template.imported_macro_files {
            walk.reach(file);
        }
        walk.nodes(&template.ast);
    }
    walk.problems
}

/// How an expression's value is used where it stands.
#[derive(Debug, Clone)]
enum Role {
    /// Written out as it is (`{{ x }}`): the splice writes the value there.
    Output,
    /// Only its truth counts (`{% if x %}`, `not`, `and`, `or`).
    Truth,
    /// Anything else, said the way the log says it ("is tested with ending_with").
    Other(String),
}

struct Walk<'a> {
    tera: &'a Tera,
    /// The templates rendered, whose block definitions span their parents.
    start: &'a [&'a str],
    /// The names the reader's fields hang from (`subscriber`, `unsubscribe_url`).
    roots: HashSet<&'a str>,
    fields: &'a [ReaderPath],
    /// The template being walked.
    template: String,
    /// Set inside a macro body or a filter section: what happens there to
    /// output, which then is not the value as it is.
    wrapped: Option<String>,
    /// Templates still to walk, with the wrapping they are reached in.
    queue: Vec<(String, Option<String>)>,
    seen: HashSet<(String, Option<String>)>,
    problems: Vec<String>,
}

impl Walk<'_> {
    fn reach(&mut self, name: &str) {
        let key = (name.to_owned(), self.wrapped.clone());
        if self.seen.insert(key.clone()) {
            self.queue.push(key);
        }
    }

    fn problem(&mut self, what: String) {
        let line = format!("{}: {what}", self.template);
        if !self.problems.contains(&line) {
            self.problems.push(line);
        }
    }

    /// Walks `nodes` with output wrapped as `how` (a macro body, a filter section).
    fn wrapped_nodes(&mut self, nodes: &[Node], how: String) {
        let outer = self.wrapped.replace(how);
        self.nodes(nodes);
        self.wrapped = outer;
    }

    fn nodes(&mut self, nodes: &[Node]) {
        for node in nodes {
            match node {
                Node::Super
                | Node::Text(_)
                | Node::Raw(..)
                | Node::Comment(..)
                | Node::Break(_)
                | Node::Continue(_) => {}
                Node::VariableBlock(_, expr) => self.expr(expr, Role::Output),
                Node::MacroDefinition(_, m, _) => {
                    for default in m.args.values().flatten() {
                        self.expr(
                            default,
                            Role::Other(format!("is a default in macro {}", m.name)),
                        );
                    }
                    self.wrapped_nodes(&m.body, format!("is written inside macro {}", m.name));
                }
                Node::Extends(_, name) | Node::ImportMacro(_, name, _) => self.reach(name),
                // Missing ones are skipped or fail alike on either path.
                Node::Include(_, names, _) => {
                    for name in names {
                        self.reach(name);
                    }
                }
                Node::Set(_, set) => {
                    let tag = if set.global { "set_global" } else { "set" };
                    self.expr(
                        &set.value,
                        Role::Other(format!("is assigned to {} ({tag})", set.key)),
                    );
                }
                Node::FilterSection(_, section, _) => {
                    let filter = &section.filter;
                    self.args(&filter.args, &format!("filter {}", filter.name));
                    let how = format!("is filtered with {} (a filter section)", filter.name);
                    self.wrapped_nodes(&section.body, how);
                }
                Node::Block(_, block, _) => {
                    self.nodes(&block.body);
                    if let Some(how) = self.wrapped.clone() {
                        self.wrapped_block(&block.name, how);
                    }
                }
                Node::Forloop(_, forloop, _) => {
                    self.expr(&forloop.container, Role::Other("is looped over".into()));
                    self.nodes(&forloop.body);
                    if let Some(body) = &forloop.empty_body {
                        self.nodes(body);
                    }
                }
                Node::If(branches, _) => {
                    for (_, condition, body) in &branches.conditions {
                        self.expr(condition, Role::Truth);
                        self.nodes(body);
                    }
                    if let Some((_, body)) = &branches.otherwise {
                        self.nodes(body);
                    }
                }
            }
        }
    }

    /// A block inside a filter section or macro: whichever definition of it
    /// renders there (a child's override, a parent's through `super()`) is
    /// wrapped too.
    fn wrapped_block(&mut self, name: &str, how: String) {
        let tera = self.tera;
        let definitions = self
            .start
            .iter()
            .filter_map(|t| tera.templates.get(*t))
            .filter_map(|t| t.blocks_definitions.get(name));
        for (template, block) in definitions.flatten() {
            let key = (format!("{template}#{name}"), Some(how.clone()));
            if !self.seen.insert(key) {
                continue;
            }
            let outer = std::mem::replace(&mut self.template, template.clone());
            self.wrapped_nodes(&block.body, how.clone());
            self.template = outer;
        }
    }

    fn args(&mut self, args: &std::collections::HashMap<String, Expr>, of: &str) {
        for arg in args.values() {
            self.expr(arg, Role::Other(format!("is an argument of {of}")));
        }
    }

    fn expr(&mut self, expr: &Expr, role: Role) {
        for filter in &expr.filters {
            self.args(&filter.args, &format!("filter {}", filter.name));
        }
        let role = if !expr.filters.is_empty() {
            let names: Vec<&str> = expr.filters.iter().map(|f| f.name.as_str()).collect();
            Role::Other(format!("is filtered with {}", names.join(" | ")))
        } else if expr.negated && !matches!(role, Role::Truth) {
            Role::Other("is written negated (not)".into())
        } else {
            role
        };
        self.val(&expr.val, role);
    }

    fn val(&mut self, val: &ExprVal, role: Role) {
        match val {
            ExprVal::String(_) | ExprVal::Int(_) | ExprVal::Float(_) | ExprVal::Bool(_) => {}
            ExprVal::Ident(name) => self.ident(name, role),
            ExprVal::Math(math) => {
                let role = Role::Other(format!("is used in arithmetic ({})", math.operator));
                self.expr(&math.lhs, role.clone());
                self.expr(&math.rhs, role);
            }
            ExprVal::Logic(logic) => {
                let role = match (logic.operator, role) {
                    (LogicOperator::And | LogicOperator::Or, Role::Truth) => Role::Truth,
                    (LogicOperator::And | LogicOperator::Or, _) => {
                        Role::Other(format!("is written through {}", logic.operator))
                    }
                    (op, _) => Role::Other(format!("is compared ({op})")),
                };
                self.expr(&logic.lhs, role.clone());
                self.expr(&logic.rhs, role);
            }
            ExprVal::Test(test) => {
                self.ident(&test.ident, Role::Other(format!("is tested with {}", test.name)));
                for arg in &test.args {
                    self.expr(arg, Role::Other(format!("is an argument of test {}", test.name)));
                }
            }
            ExprVal::MacroCall(call) => {
                self.args(&call.args, &format!("macro {}::{}", call.namespace, call.name));
            }
            ExprVal::FunctionCall(call) => {
                self.args(&call.args, &format!("function {}", call.name))
            }
            ExprVal::Array(items) => {
                for item in items {
                    self.expr(item, Role::Other("is put in an array".into()));
                }
            }
            ExprVal::StringConcat(concat) => {
                for value in &concat.values {
                    self.val(value, Role::Other("is concatenated (~)".into()));
                }
            }
            ExprVal::In(within) => {
                self.expr(&within.lhs, Role::Other("is used with in".into()));
                self.expr(&within.rhs, Role::Other("is used with in".into()));
            }
        }
    }

    fn ident(&mut self, name: &str, role: Role) {
        if name == "__tera_context" {
            self.problem(
                "__tera_context writes out the whole context, the reader's with it".into(),
            );
            return;
        }
        let root = name.split(['.', '[']).next().unwrap_or(name);
        if !self.roots.contains(root) {
            return;
        }
        let role = match (role, &self.wrapped) {
            (Role::Output, Some(how)) => Role::Other(how.clone()),
            (role, _) => role,
        };
        if name.contains('[') {
            return self.problem(format!("{name} is subscripted"));
        }
        match self.fields.iter().find(|f| f.path == name) {
            Some(ReaderPath { spliced: true, .. }) => {
                if let Role::Other(what) = role {
                    self.problem(format!("{name} {what}"));
                }
            }
            Some(_) => self.problem(format!("{name} is a reader field the splice cannot fill")),
            None if name == root => self.problem(format!("{name} is used as a whole")),
            None => self.problem(format!("{name} is not one of the reader's fields")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Vec<ReaderPath> {
        ["subscriber.name", "subscriber.email", "unsubscribe_url", "preferences_url"]
            .into_iter()
            .map(|p| ReaderPath { path: p.into(), spliced: true })
            .collect()
    }

    fn uses(files: &[(&str, &str)]) -> Vec<String> {
        let mut tera = Tera::default();
        tera.add_raw_templates(files.to_vec()).unwrap();
        per_reader_uses(&tera, &["digest.html"], &fields())
    }

    #[test]
    fn the_log_says_which_template_does_what_with_which_field() {
        let said = uses(&[(
            "digest.html",
            "{% if subscriber.email and subscriber.email is ending_with(\"example.org\") %}ORG{% endif %}",
        )]);
        assert_eq!(said, ["digest.html: subscriber.email is tested with ending_with"]);
        let said = uses(&[
            ("digest.html", "{% include \"part.html\" %}"),
            ("part.html", "{{ subscriber.name | upper }} {{ unsubscribe_url ~ \"x\" }}"),
        ]);
        assert_eq!(
            said,
            [
                "part.html: subscriber.name is filtered with upper",
                "part.html: unsubscribe_url is concatenated (~)"
            ]
        );
    }

    #[test]
    fn plain_output_and_truth_pass() {
        let said = uses(&[(
            "digest.html",
            "{% if subscriber.name and not preferences_url %}{{ subscriber.name }}{% elif subscriber.email or x %}{{ unsubscribe_url }}{% endif %}{{ article.title | upper }}",
        )]);
        assert!(said.is_empty(), "{said:?}");
    }

    #[test]
    fn a_field_with_no_marker_is_never_spliced() {
        let mut tera = Tera::default();
        tera.add_raw_template("digest.html", "{{ subscriber.since }}").unwrap();
        let mut fields = fields();
        fields.push(ReaderPath { path: "subscriber.since".into(), spliced: false });
        let said = per_reader_uses(&tera, &["digest.html"], &fields);
        assert_eq!(
            said,
            ["digest.html: subscriber.since is a reader field the splice cannot fill"]
        );
    }
}
