//! The policy: which principal may call which tool, with which arguments.

use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Principals this rule is about; `"*"` is everyone, the anonymous included.
    pub principals: Vec<String>,
    /// Tool names (globs: `*` any run of characters, `?` one) these principals may call.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Tool names they may not call, whatever another rule allows.
    #[serde(default)]
    pub deny: Vec<String>,
}

/// A condition on one argument of the tools matching `tool`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgumentRule {
    /// Tool name glob.
    pub tool: String,
    /// The argument, a top-level key or a dotted path (`target.path`).
    pub argument: String,
    /// A string that must start with this; paths are normalised first (`.`/`..` resolved), so
    /// `/srv/public/../secret` does not pass for `/srv/public`.
    pub starts_with: Option<String>,
    /// Allowed values.
    pub one_of: Option<Vec<Value>>,
    /// Numeric bounds, inclusive.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// The longest string allowed, in characters.
    pub max_length: Option<usize>,
}

/// `*` and `?` globbing, no escapes.
pub fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn applies(rule: &Rule, principal: Option<&str>) -> bool {
    rule.principals
        .iter()
        .any(|p| p == "*" || Some(p.as_str()) == principal)
}

/// Whether `principal` may call `tool`: some rule for them allows it and none denies it.
pub fn tool_allowed(rules: &[Rule], principal: Option<&str>, tool: &str) -> Result<(), String> {
    let mine: Vec<&Rule> = rules.iter().filter(|r| applies(r, principal)).collect();
    if let Some(pattern) = mine
        .iter()
        .flat_map(|r| &r.deny)
        .find(|pattern| glob(pattern, tool))
    {
        return Err(format!("denied by rule \"{pattern}\""));
    }
    if mine.iter().flat_map(|r| &r.allow).any(|p| glob(p, tool)) {
        Ok(())
    } else {
        Err("no rule allows it".into())
    }
}

/// Checks every argument rule for `tool` against `args`.
pub fn arguments_allowed(rules: &[ArgumentRule], tool: &str, args: &Value) -> Result<(), String> {
    for rule in rules.iter().filter(|r| glob(&r.tool, tool)) {
        let value = rule.argument.split('.').try_fold(args, |v, key| v.get(key));
        let Some(value) = value else {
            return Err(format!("argument `{}` is missing", rule.argument));
        };
        check(rule, value).map_err(|why| format!("argument `{}` {why}", rule.argument))?;
    }
    Ok(())
}

fn check(rule: &ArgumentRule, value: &Value) -> Result<(), String> {
    if let Some(prefix) = &rule.starts_with {
        let s = value.as_str().ok_or("must be a string")?;
        let s = if s.starts_with('/') {
            normalise(s)
        } else if s.split(['/', '\\']).any(|seg| seg == "..") {
            // A relative path has no root to resolve `..` against: `public/../secret`
            // would pass a `public` prefix while naming something else.
            return Err("must not climb with `..`".into());
        } else {
            s.to_string()
        };
        if !(s == *prefix
            || (s.starts_with(prefix.as_str())
                && (prefix.ends_with('/') || s[prefix.len()..].starts_with('/'))))
        {
            return Err(format!("must be under {prefix:?}"));
        }
    }
    if let Some(allowed) = &rule.one_of
        && !allowed.contains(value)
    {
        return Err("is not one of the allowed values".into());
    }
    if rule.min.is_some() || rule.max.is_some() {
        let n = value.as_f64().ok_or("must be a number")?;
        if rule.min.is_some_and(|min| n < min) || rule.max.is_some_and(|max| n > max) {
            return Err(format!(
                "must be within [{}, {}]",
                rule.min.map_or("-inf".into(), |m| m.to_string()),
                rule.max.map_or("inf".into(), |m| m.to_string())
            ));
        }
    }
    if let Some(max) = rule.max_length {
        let s = value.as_str().ok_or("must be a string")?;
        if s.chars().count() > max {
            return Err(format!("is longer than {max} characters"));
        }
    }
    Ok(())
}

/// Resolves `.` and `..` in an absolute path, lexically.
fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_relative_path_cannot_climb_out_of_its_prefix() {
        let rule: ArgumentRule = serde_json::from_value(
            json!({"tool": "t", "argument": "path", "starts_with": "public"}),
        )
        .expect("rule");
        assert!(check(&rule, &json!("public/a.txt")).is_ok());
        for sneaky in [
            "public/../secret",
            "public/a/../../secret",
            "public\\..\\secret",
        ] {
            assert!(check(&rule, &json!(sneaky)).is_err(), "{sneaky}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob("py_*", "py_add"));
        assert!(glob("*", ""));
        assert!(glob("a?c", "abc"));
        assert!(!glob("py_*", "everything_echo"));
        assert!(glob("*_get-*", "everything_get-env"));
    }

    #[test]
    fn argument_rules() {
        let rules: Vec<ArgumentRule> = serde_json::from_value(json!([
            {"tool": "py_read_file", "argument": "path", "starts_with": "/srv/public"},
            {"tool": "py_pay", "argument": "amount", "max": 100}
        ]))
        .unwrap();
        let ok = |t, a| arguments_allowed(&rules, t, &a).is_ok();
        assert!(ok("py_read_file", json!({"path": "/srv/public/a.txt"})));
        assert!(!ok(
            "py_read_file",
            json!({"path": "/srv/public/../secret"})
        ));
        assert!(!ok("py_read_file", json!({"path": "/srv/publicity"})));
        assert!(!ok("py_read_file", json!({})));
        assert!(ok("py_pay", json!({"amount": 100})));
        assert!(!ok("py_pay", json!({"amount": 100.5})));
        assert!(!ok("py_pay", json!({"amount": "5"})));
        assert!(ok("py_add", json!({"a": 1})));
    }
}
