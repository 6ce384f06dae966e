//! `${NAME}` in the user's TOML files (season configs, drivers files, stack manifests): replaced by the
//! environment variable NAME before parsing, so that configs name data by `${CARBONMAP_REAL_DATA}` and run from
//! any checkout. Comments are left alone; an unset variable is an error naming the line.

/// Expand `${NAME}` outside comments. Values are escaped for TOML basic strings (backslash and quote).
pub fn expand(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> std::result::Result<String, String> {
    expand_with(text, lookup, comment_start, |v| {
        v.replace('\\', "\\\\").replace('"', "\\\"")
    })
}

/// Expand `${NAME}` everywhere in an XML document (a GDAL VRT), values escaped for XML text.
pub fn expand_xml(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> std::result::Result<String, String> {
    expand_with(
        text,
        lookup,
        |_| None,
        |v| {
            v.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        },
    )
}

/// `${NAME}` replaced by `escape(lookup(NAME))` in each line before `comment(line)`; every unset name and
/// unclosed `${` listed by line.
fn expand_with(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
    comment: impl Fn(&str) -> Option<usize>,
    escape: impl Fn(&str) -> String,
) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let (code, rest_of_line) = line.split_at(comment(line).unwrap_or(line.len()));
        let mut rest = code;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let Some(j) = rest[i..].find('}') else {
                problems.push(format!("line {}: unclosed ${{", n + 1));
                rest = "";
                break;
            };
            let name = &rest[i + 2..i + j];
            match lookup(name) {
                Some(v) => out.push_str(&escape(&v)),
                None => problems.push(format!(
                    "line {}: environment variable {name} is not set (named as ${{{name}}})",
                    n + 1
                )),
            }
            rest = &rest[i + j + 1..];
        }
        out.push_str(rest);
        out.push_str(rest_of_line);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join("; "))
    }
}

/// Where a TOML comment starts on a line (a `#` outside quoted strings).
fn comment_start(line: &str) -> Option<usize> {
    let (mut quote, mut escaped) = (None::<char>, false);
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' => return Some(i),
            None => {}
        }
    }
    None
}

/// The process environment.
pub fn from_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "DATA" => Some("/srv/data".into()),
            "WIN" => Some(r#"C:\d "x""#.into()),
            _ => None,
        }
    }

    #[test]
    fn expands_values_not_comments_and_names_unset_variables() {
        let t = "file = \"${DATA}/a.csv\" # ${UNSET} in a comment\nw = \"${WIN}\"\n";
        assert_eq!(
            expand(t, env).unwrap(),
            "file = \"/srv/data/a.csv\" # ${UNSET} in a comment\nw = \"C:\\\\d \\\"x\\\"\"\n"
        );
        let e = expand("a = 1\nb = \"${NOPE}/x\"\nc = \"${DATA\"\n", env).unwrap_err();
        assert!(
            e.contains("line 2: environment variable NOPE is not set"),
            "{e}"
        );
        assert!(e.contains("line 3: unclosed"), "{e}");
        // A '#' inside a string is not a comment.
        assert_eq!(
            expand("a = \"#${DATA}\"", env).unwrap(),
            "a = \"#/srv/data\""
        );
    }

    #[test]
    fn xml_values_are_escaped_and_unset_names_reported() {
        let got = expand_xml("<S>${DATA}/a&amp;b.tif</S>\n", env).unwrap();
        assert_eq!(got, "<S>/srv/data/a&amp;b.tif</S>\n");
        let lt = |_: &str| Some("a<b&c".to_string());
        assert_eq!(expand_xml("${X}", lt).unwrap(), "a&lt;b&amp;c");
        let err = expand_xml("<a/>\n<S>${NOPE}</S>", env).unwrap_err();
        assert!(
            err.contains("line 2: environment variable NOPE is not set"),
            "{err}"
        );
    }
}
