//! The console's message catalogues: one TOML file per language, built into the binary.
//! Templates ask for every label with `t("section.key")`; a key missing from the catalogue
//! of the page's language fails the render (and the test below fails the build's tests),
//! so no label is ever hard-coded in a template or silently left blank.

use std::collections::BTreeMap;
use std::sync::LazyLock;

/// The languages of the console: Chinese by default, English on request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "zh" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The other language, for the switch in the page header.
    pub fn other(self) -> Lang {
        match self {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }
}

pub(crate) const ZH: &str = include_str!("i18n/zh.toml");
pub(crate) const EN: &str = include_str!("i18n/en.toml");

/// A catalogue as `section.key` → text.
pub(crate) fn flatten(source: &str) -> BTreeMap<String, String> {
    fn walk(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
        match value {
            toml::Value::Table(table) => {
                for (key, value) in table {
                    let name = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&name, value, out);
                }
            }
            toml::Value::String(text) => {
                out.insert(prefix.to_owned(), text.clone());
            }
            other => {
                out.insert(prefix.to_owned(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    // The catalogues are part of the source: one that does not parse fails its test.
    if let Ok(table) = toml::from_str::<toml::Table>(source) {
        walk("", &toml::Value::Table(table), &mut out);
    }
    out
}

static CATALOGUES: LazyLock<[BTreeMap<String, String>; 2]> =
    LazyLock::new(|| [flatten(ZH), flatten(EN)]);

/// The text of `key` in `lang`, or `None` when the catalogue lacks it.
pub fn text(lang: Lang, key: &str) -> Option<&'static str> {
    let catalogue = match lang {
        Lang::Zh => &CATALOGUES[0],
        Lang::En => &CATALOGUES[1],
    };
    catalogue.get(key).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::http::console::templates::TEMPLATES;

    /// Every `t("…")` key named in `source`.
    fn keys_used(source: &str) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        for quote in ['"', '\''] {
            let opening = format!("t({quote}");
            let mut rest = source;
            while let Some(at) = rest.find(&opening) {
                let preceded_by_name = rest[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_');
                rest = &rest[at + opening.len()..];
                if preceded_by_name {
                    continue;
                }
                if let Some(end) = rest.find(quote) {
                    keys.insert(rest[..end].to_owned());
                    rest = &rest[end..];
                }
            }
        }
        keys
    }

    #[test]
    fn both_catalogues_parse_and_hold_the_same_keys() {
        for (name, source) in [("zh", ZH), ("en", EN)] {
            toml::from_str::<toml::Table>(source).unwrap_or_else(|e| panic!("{name}.toml: {e}"));
        }
        let zh: BTreeSet<String> = flatten(ZH).into_keys().collect();
        let en: BTreeSet<String> = flatten(EN).into_keys().collect();
        assert!(zh.len() > 50, "{zh:?}");
        let only_zh: Vec<_> = zh.difference(&en).collect();
        let only_en: Vec<_> = en.difference(&zh).collect();
        assert!(only_zh.is_empty(), "missing from en.toml: {only_zh:?}");
        assert!(only_en.is_empty(), "missing from zh.toml: {only_en:?}");
        for (key, text) in flatten(ZH).iter().chain(flatten(EN).iter()) {
            assert!(!text.trim().is_empty(), "{key} is empty");
        }
    }

    #[test]
    fn every_label_of_every_template_is_in_both_catalogues() {
        let mut used = BTreeSet::new();
        for (name, source) in TEMPLATES {
            let keys = keys_used(source);
            for key in &keys {
                for lang in [Lang::Zh, Lang::En] {
                    assert!(
                        text(lang, key).is_some(),
                        "{name} uses {key:?}, missing from {}.toml",
                        lang.code()
                    );
                }
            }
            used.extend(keys);
        }
        assert!(used.len() > 50, "found only {used:?}: is the scan broken?");
    }

    #[test]
    fn the_scan_sees_a_missing_key() {
        let keys = keys_used(r#"{{ t("nav.overview") }} {{ t('no.such') }} {{ fmt("x") }}"#);
        assert_eq!(
            keys,
            BTreeSet::from(["nav.overview".to_owned(), "no.such".to_owned()])
        );
        assert!(text(Lang::En, "no.such").is_none());
    }
}
