//! The environment of every child: a small allow-list from the host, then the caller's layers.
//!
//! The host's other variables (the admin server's secrets) never reach user code.

use std::collections::BTreeMap;

/// Host variables passed through by exact name.
const ALLOWED_NAMES: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "TERM",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// Host variables passed through by prefix.
const ALLOWED_PREFIXES: &[&str] = &["LC_", "npm_config_", "NPM_CONFIG_", "COREPACK_"];

/// Whether a host variable may reach children.
pub fn is_allowed(name: &str) -> bool {
    ALLOWED_NAMES.contains(&name) || ALLOWED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The allowed subset of `vars` (normally `std::env::vars()`).
pub fn allowed_from(vars: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, String> {
    vars.into_iter()
        .filter(|(name, _)| is_allowed(name))
        .collect()
}

/// The allowed subset of this process's environment.
pub fn host_allowed() -> BTreeMap<String, String> {
    allowed_from(
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
    )
}

/// The host allow-list with `layers` applied in order (later layers win).
pub fn compose<'a>(
    layers: impl IntoIterator<Item = &'a BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut env = host_allowed();
    for layer in layers {
        env.extend(layer.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_allow_list_passes() {
        let host = [
            ("PATH", "/bin"),
            ("LC_ALL", "C"),
            ("npm_config_cache", "/c"),
            ("COREPACK_HOME", "/h"),
            ("DATABASE_URL", "postgres://secret"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
            ("NODE_OPTIONS", "--require evil"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let allowed = allowed_from(host);
        let names: Vec<&str> = allowed.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            vec!["COREPACK_HOME", "LC_ALL", "PATH", "npm_config_cache"]
        );
    }

    #[test]
    fn later_layers_win() {
        let global = BTreeMap::from([
            ("A".to_owned(), "global".to_owned()),
            ("B".to_owned(), "global".to_owned()),
        ]);
        let options = BTreeMap::from([("B".to_owned(), "options".to_owned())]);
        let env = compose([&global, &options]);
        assert_eq!(env["A"], "global");
        assert_eq!(env["B"], "options");
    }
}
