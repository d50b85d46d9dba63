//! `--redis URL`: `redis://[user:pass@]host[:port][/db]` (PROTOCOL.md §10).
//! Parsed by [`crate::resp::parse_url`] when the configuration is read, so a
//! typo stops the start instead of showing up as an endless reconnect loop;
//! this module only hides the password wherever the URL is shown.

/// The URL with its password replaced by `***`, for errors and `Debug`.
/// It must also hide passwords in URLs that failed to parse (an unencoded
/// `/` or `@` in the password), so it masks up to the last `@`.
pub(crate) fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    match rest.rsplit_once('@') {
        Some((info, tail)) => match info.split_once(':') {
            Some((user, _)) if !user.contains('/') => format!("{scheme}{user}:***@{tail}"),
            Some(_) => format!("{scheme}***@{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}
