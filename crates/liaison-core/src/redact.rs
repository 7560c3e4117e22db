//! Masking secrets in connection strings before they reach a log line, an error message or
//! `--print-config`.
//!
//! One function for every crate: the ledger's PostgreSQL URL, the bus's AMQP URL and the
//! printed configuration all go through [`redact_url`], so a secret masked in one place
//! is masked in all of them. It works on the text rather than on a parsed URL, so that
//! even a string no URL parser accepts is reported without leaking what it holds.

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// `url` with every password masked: the password of the userinfo
/// (`scheme://user:secret@host` → `scheme://user:***@host`) and the value of every query
/// parameter that names a password (`?password=…`, `?sslpassword=…`). A libpq key/value
/// string (`host=db password=…`) has its password values masked the same way. Anything
/// else is kept as it was.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return redact_key_values(url);
    };
    let (head, rest) = url.split_at(scheme_end);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut out = String::with_capacity(url.len());
    out.push_str(head);
    // The host follows the last '@': a password may itself hold an unescaped '@'.
    match authority.rfind('@') {
        Some(at) => {
            match authority[..at].split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(MASK);
                }
                None => out.push_str(&authority[..at]),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let (before_fragment, fragment) = match tail.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (tail, None),
    };
    match before_fragment.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let pairs: Vec<String> = query.split('&').map(redact_pair).collect();
            out.push_str(&pairs.join("&"));
        }
        None => out.push_str(before_fragment),
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

fn redact_pair(pair: &str) -> String {
    match pair.split_once('=') {
        Some((key, _value)) if names_a_secret(key) => format!("{key}={MASK}"),
        _ => pair.to_owned(),
    }
}

/// Whether a parameter name (percent-decoded, any case) names a password.
fn names_a_secret(key: &str) -> bool {
    let key = percent_decode(key).to_ascii_lowercase();
    key.contains("password") || matches!(key.as_str(), "pass" | "passwd" | "pwd")
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let value = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                decoded.push(u8::try_from(value).unwrap_or(b'?'));
                i += 3;
            }
            (b'+', _, _) => {
                decoded.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// A libpq key/value connection string: `key = value` pairs, the value bare or quoted
/// (`password='a b'`), spaces allowed around `=`.
fn redact_key_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let trimmed = rest.trim_start();
        out.push_str(&rest[..rest.len() - trimmed.len()]);
        rest = trimmed;
        let key_end = rest
            .find(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or(rest.len());
        let (key, after_key) = rest.split_at(key_end);
        let Some(value) = after_key.trim_start().strip_prefix('=') else {
            // A word that is no `key=`: keep it (and at least one character, to move on).
            let end = key_end.max(rest.chars().next().map_or(0, char::len_utf8));
            out.push_str(&rest[..end]);
            rest = &rest[end..];
            continue;
        };
        let after_value = skip_value(value.trim_start());
        if names_a_secret(key) {
            out.push_str(key);
            out.push('=');
            out.push_str(MASK);
        } else {
            out.push_str(&rest[..rest.len() - after_value.len()]);
        }
        rest = after_value;
    }
    out
}

/// What follows a key/value value: a quoted value ends at its closing quote (`\'` and `\\`
/// are escapes), a bare one at the next whitespace.
fn skip_value(value: &str) -> &str {
    if let Some(quoted) = value.strip_prefix('\'') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => return &quoted[i + 1..],
                _ => {}
            }
        }
        ""
    } else {
        let end = value.find(char::is_whitespace).unwrap_or(value.len());
        &value[end..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_userinfo_password_is_masked_and_the_rest_kept() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db.example:5432/liaison?sslmode=require"),
            "postgres://app:***@db.example:5432/liaison?sslmode=require"
        );
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        // A password holding '@' does not leak its tail as the host.
        assert_eq!(
            redact_url("amqps://eco:p@ss@rabbit:5671/liaison?auth_mechanism=external"),
            "amqps://eco:***@rabbit:5671/liaison?auth_mechanism=external"
        );
        assert_eq!(
            redact_url("postgres://app:s3cret@db"),
            "postgres://app:***@db"
        );
    }

    #[test]
    fn urls_without_secrets_are_unchanged() {
        for url in [
            "postgres://postgres@127.0.0.1:5432/x",
            "postgres://127.0.0.1/x",
            "amqp://127.0.0.1:5672",
            "postgres://db/x?sslmode=verify-full&application_name=liaison#frag",
            "not a url",
            "",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn password_query_parameters_are_masked() {
        assert_eq!(
            redact_url("postgres://app@db/liaison?password=s3cret"),
            "postgres://app@db/liaison?password=***"
        );
        assert_eq!(
            redact_url("postgres://db/liaison?sslmode=require&PassWord=s3cret&x=1"),
            "postgres://db/liaison?sslmode=require&PassWord=***&x=1"
        );
        assert_eq!(
            redact_url("postgres://db?sslpassword=k3y&pass%77ord=s3cret"),
            "postgres://db?sslpassword=***&pass%77ord=***"
        );
        // No path: the query follows the authority directly.
        assert_eq!(
            redact_url("postgres://u:p@db?password=s3cret#f"),
            "postgres://u:***@db?password=***#f"
        );
    }

    #[test]
    fn key_value_connection_strings_are_masked() {
        assert_eq!(
            redact_url("host=db user=app password=s3cret dbname=liaison"),
            "host=db user=app password=*** dbname=liaison"
        );
        assert_eq!(
            redact_url("host=db password='s3 cr\\'et' dbname=liaison"),
            "host=db password=*** dbname=liaison"
        );
        assert_eq!(
            redact_url("host = db password = s3cret"),
            "host = db password=***"
        );
    }

    #[test]
    fn no_secret_survives_in_any_form() {
        for url in [
            "postgres://app:s3cret@db/x?password=s3cret",
            "postgres://db/x?a=1&password=s3cret&sslpassword=s3cret",
            "amqp://u:s3cret@h/%2f?password=s3cret",
            "host=h password=s3cret",
            "password =s3cret",
            "dbname=x password= 's3cret'",
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains("s3cret"), "{url} → {shown}");
        }
    }
}
