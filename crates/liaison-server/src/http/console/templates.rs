//! The console's templates, built into the binary, and the one environment that renders
//! them. HTML is escaped automatically (the names end in `.html`); server-made markup
//! (the SVG charts, embedded JSON) is passed as safe strings by the handlers.

use std::sync::LazyLock;

use minijinja::{Environment, Error, ErrorKind, State};

use super::i18n::{self, Lang};

/// Every template: its name and source.
pub(crate) const TEMPLATES: [(&str, &str); 9] = [
    ("base.html", include_str!("templates/base.html")),
    ("forbidden.html", include_str!("templates/forbidden.html")),
    ("error.html", include_str!("templates/error.html")),
    ("overview.html", include_str!("templates/overview.html")),
    ("search.html", include_str!("templates/search.html")),
    ("case.html", include_str!("templates/case.html")),
    ("message.html", include_str!("templates/message.html")),
    (
        "deadletters.html",
        include_str!("templates/deadletters.html"),
    ),
    ("ledger.html", include_str!("templates/ledger.html")),
];

/// `t("section.key")`: the label in the language of the page being rendered. A key the
/// catalogue lacks is an error, never an empty label.
fn translate(state: &State, key: &str) -> Result<String, Error> {
    let lang = state
        .lookup("lang")
        .and_then(|v| v.as_str().and_then(Lang::parse))
        .unwrap_or(Lang::Zh);
    i18n::text(lang, key).map(str::to_owned).ok_or_else(|| {
        Error::new(
            ErrorKind::UndefinedError,
            format!(
                "label {key:?} is missing from the {} catalogue",
                lang.code()
            ),
        )
    })
}

pub(crate) static ENVIRONMENT: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    for (name, source) in TEMPLATES {
        // A template that does not parse fails `every_template_renders_in_both_languages`.
        if let Err(e) = env.add_template(name, source) {
            tracing::error!("console template {name}: {e}");
        }
    }
    env.add_function("t", translate);
    env
});
