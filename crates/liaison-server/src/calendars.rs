//! The holiday calendar a deployment counts legal periods with: the years built into the
//! binary (`calendars/cn/`), or, when `calendar_dir` is configured, exactly the year files
//! of that directory. Replacing rather than merging keeps one answer to "which notice did
//! this deadline use": the directory's.

use std::path::{Path, PathBuf};

use liaison_core::HolidayCalendar;
use liaison_core::calendar::CalendarDataError;

#[derive(Debug, thiserror::Error)]
pub enum CalendarLoadError {
    #[error("cannot read holiday calendar {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("holiday calendar directory {0} holds no YEAR.toml file")]
    Empty(PathBuf),
    /// Printed as one line, `DIR/FILE: what is wrong` (the data error names the file).
    #[error("holiday calendar {}/{}", .dir.display(), .error)]
    Data {
        dir: PathBuf,
        error: CalendarDataError,
    },
}

/// The built-in calendar when `dir` is `None`; else every `*.toml` file of `dir` (each
/// named after its year). Other files (a README) are ignored; a directory with no year
/// file is refused, since every day-counting clock would then fail later instead of now.
pub fn load(dir: Option<&Path>) -> Result<HolidayCalendar, CalendarLoadError> {
    let Some(dir) = dir else {
        return Ok(HolidayCalendar::shipped());
    };
    let read_err = |path: &Path| {
        let path = path.to_owned();
        move |source| CalendarLoadError::Read { path, source }
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err(dir))? {
        let path = entry.map_err(read_err(dir))?.path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path).map_err(read_err(&path))?;
        files.push((name, text));
    }
    if files.is_empty() {
        return Err(CalendarLoadError::Empty(dir.to_owned()));
    }
    files.sort();
    HolidayCalendar::from_files(files.iter().map(|(n, t)| (n.as_str(), t.as_str()))).map_err(
        |error| CalendarLoadError::Data {
            dir: dir.to_owned(),
            error,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../calendars/cn")
    }

    #[test]
    fn the_shipped_directory_is_the_built_in_calendar() {
        assert_eq!(
            load(Some(&shipped_dir())).unwrap(),
            HolidayCalendar::shipped()
        );
        assert_eq!(load(None).unwrap(), HolidayCalendar::shipped());
    }

    #[test]
    fn a_directory_replaces_the_built_in_years() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("2027.toml"),
            "year = 2027\nnotice = \"n\"\ndocument = \"d\"\nissued = 2026-11-01\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("README.md"), "not a year").unwrap();
        let calendar = load(Some(dir.path())).unwrap();
        let years: Vec<i32> = calendar.notices().map(|n| n.year).collect();
        assert_eq!(years, [2027]);
    }

    #[test]
    fn bad_directories_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load(Some(dir.path())),
            Err(CalendarLoadError::Empty(_))
        ));
        assert!(matches!(
            load(Some(&dir.path().join("missing"))),
            Err(CalendarLoadError::Read { .. })
        ));
        std::fs::write(dir.path().join("2027.toml"), "year = 2027\n").unwrap();
        let err = load(Some(dir.path())).unwrap_err();
        assert!(err.to_string().contains("2027.toml"), "{err}");
    }
}
