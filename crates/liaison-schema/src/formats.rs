//! Custom `format`s of the catalogue: Chinese identifiers whose last character is a check
//! character, so that a mistyped number is refused at the door instead of reaching a
//! prosecutor's file.
//!
//! - `cn-resident-id`: the 18-character citizen identification number of GB 11643-1999:
//!   6-digit address code, 8-digit birth date (a real calendar date), 3-digit sequence and
//!   an ISO 7064 MOD 11-2 check character (`0`–`9` or `X`).
//! - `cn-uscc`: the 18-character unified social credit code of GB 32100-2015: characters from
//!   `0-9 A-H J-N P-R T-U W-Y`, a 6-digit administrative division code in positions 3–8 and
//!   a weighted MOD 31 check character.

/// The format name of the resident identity number.
pub const RESIDENT_ID: &str = "cn-resident-id";
/// The format name of the unified social credit code.
pub const USCC: &str = "cn-uscc";

/// A format check as the validator takes it.
pub(crate) type FormatCheck = fn(&str) -> bool;

/// Every custom format with its check, for the validator options.
pub(crate) fn custom_formats() -> [(&'static str, FormatCheck); 2] {
    [
        (RESIDENT_ID, is_resident_id),
        (USCC, is_unified_social_credit_code),
    ]
}

/// ISO 7064 MOD 11-2 weights: 2^(17 - i) mod 11 for positions 0..17.
const RESIDENT_ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// The check character for each remainder of the weighted sum mod 11.
const RESIDENT_ID_CHECK: [u8; 11] = *b"10X98765432";

/// Whether `value` is a GB 11643-1999 resident identity number with a correct check
/// character and a real birth date.
pub fn is_resident_id(value: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.len() != 18 || !bytes[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    if !is_birth_date(&bytes[6..14]) {
        return false;
    }
    resident_id_check_char(&bytes[..17]) == Some(bytes[17])
}

/// The check character for the first 17 digits of a resident identity number.
pub fn resident_id_check_char(digits: &[u8]) -> Option<u8> {
    if digits.len() != 17 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = digits
        .iter()
        .zip(RESIDENT_ID_WEIGHTS)
        .map(|(digit, weight)| u32::from(digit - b'0') * weight)
        .sum();
    RESIDENT_ID_CHECK.get((sum % 11) as usize).copied()
}

/// `YYYYMMDD` naming a real day from 1900 on (the standard's numbers were first issued to
/// living people; a future date is still accepted, as the validator has no clock).
fn is_birth_date(digits: &[u8]) -> bool {
    let number = |range: std::ops::Range<usize>| {
        digits[range]
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
    };
    let (year, month, day) = (number(0..4), number(4..6), number(6..8));
    if !(1900..=2099).contains(&year) || !(1..=12).contains(&month) || day == 0 {
        return false;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    day <= days_in_month
}

/// The 31 characters of GB 32100-2015, in the order of their values 0..31.
const USCC_CHARSET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
/// 3^i mod 31 for positions 0..17.
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

fn uscc_value(byte: u8) -> Option<u32> {
    USCC_CHARSET
        .iter()
        .position(|&c| c == byte)
        .and_then(|index| u32::try_from(index).ok())
}

/// Whether `value` is a GB 32100-2015 unified social credit code with a correct check
/// character.
pub fn is_unified_social_credit_code(value: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.len() != 18 || !bytes[2..8].iter().all(u8::is_ascii_digit) {
        return false;
    }
    uscc_check_char(&bytes[..17]) == Some(bytes[17])
}

/// The check character for the first 17 characters of a unified social credit code.
pub fn uscc_check_char(code: &[u8]) -> Option<u8> {
    if code.len() != 17 {
        return None;
    }
    let mut sum = 0;
    for (&byte, weight) in code.iter().zip(USCC_WEIGHTS) {
        sum += uscc_value(byte)? * weight;
    }
    let check = (31 - sum % 31) % 31;
    USCC_CHARSET.get(check as usize).copied()
}

/// What is wrong with `value` under the custom format `format`, as a sentence for the
/// sender: which standard, which positions, and for a wrong check character the one the
/// other characters call for. `None` for a format that is not one of these, or a value that
/// passes. The value itself is never quoted (it names a person or a company); the expected
/// check character is derived from it but identifies no one.
pub fn fault(format: &str, value: &str) -> Option<String> {
    match format {
        RESIDENT_ID => resident_id_fault(value).map(|why| {
            format!("not a resident ID number (format {RESIDENT_ID}, GB 11643-1999): {why}")
        }),
        USCC => uscc_fault(value).map(|why| {
            format!("not a unified social credit code (format {USCC}, GB 32100-2015): {why}")
        }),
        _ => None,
    }
}

/// Whether `format` is one of the catalogue's custom formats.
pub fn is_custom(format: &str) -> bool {
    custom_formats().iter().any(|(name, _)| *name == format)
}

/// The first fault of a resident identity number, in the order a person checks one.
fn resident_id_fault(value: &str) -> Option<String> {
    let length = value.chars().count();
    if length != 18 || value.len() != 18 {
        return Some(format!("it has 18 characters, this value has {length}"));
    }
    let bytes = value.as_bytes();
    if let Some(index) = bytes[..17].iter().position(|b| !b.is_ascii_digit()) {
        return Some(format!(
            "position {} must be a digit: positions 1–17 are digits 0–9",
            index + 1
        ));
    }
    if !is_birth_date(&bytes[6..14]) {
        return Some("positions 7–14 must be a real birth date, YYYYMMDD, from 1900 on".to_owned());
    }
    let expected = resident_id_check_char(&bytes[..17])?;
    (bytes[17] != expected).then(|| check_character_fault(expected, "digits"))
}

/// The first fault of a unified social credit code.
fn uscc_fault(value: &str) -> Option<String> {
    let length = value.chars().count();
    if length != 18 || value.len() != 18 {
        return Some(format!("it has 18 characters, this value has {length}"));
    }
    let bytes = value.as_bytes();
    if let Some(index) = bytes[..17].iter().position(|&b| uscc_value(b).is_none()) {
        return Some(format!(
            "position {} holds a character credit codes never use: only 0–9 and the capitals \
             A–H, J–N, P–R, T–U, W–Y (no I, O, S, V, Z, no lower case)",
            index + 1
        ));
    }
    if !bytes[2..8].iter().all(u8::is_ascii_digit) {
        return Some("positions 3–8 (the administrative division code) must be digits".to_owned());
    }
    let expected = uscc_check_char(&bytes[..17])?;
    (bytes[17] != expected).then(|| check_character_fault(expected, "characters"))
}

fn check_character_fault(expected: u8, what: &str) -> String {
    format!(
        "the check character (position 18) is wrong: the first 17 {what} call for '{}'",
        expected as char
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends the computed check character: the test numbers are made up, not anyone's.
    fn with_resident_check(first17: &str) -> String {
        let check = resident_id_check_char(first17.as_bytes()).expect("17 digits");
        format!("{first17}{}", check as char)
    }

    fn with_uscc_check(first17: &str) -> String {
        let check = uscc_check_char(first17.as_bytes()).expect("17 USCC characters");
        format!("{first17}{}", check as char)
    }

    #[test]
    fn weights_follow_their_definitions() {
        for (i, weight) in RESIDENT_ID_WEIGHTS.iter().enumerate() {
            assert_eq!(*weight, (1u32 << (17 - i)) % 11, "resident id position {i}");
        }
        for (i, weight) in USCC_WEIGHTS.iter().enumerate() {
            assert_eq!(*weight, 3u32.pow(i as u32) % 31, "USCC position {i}");
        }
    }

    #[test]
    fn resident_ids_with_a_correct_check_character_pass() {
        // The standard's own worked example (GB 11643-1999 appendix): 11010519491231002X.
        assert!(is_resident_id("11010519491231002X"));
        for first17 in [
            "62072519800101123",
            "62072520000229004",
            "62072519991231555",
        ] {
            let id = with_resident_check(first17);
            assert!(is_resident_id(&id), "{id}");
        }
    }

    #[test]
    fn resident_ids_with_a_wrong_check_character_fail() {
        let good = with_resident_check("62072519800101123");
        let last = good.as_bytes()[17];
        for wrong in b"0123456789X".iter().filter(|&&c| c != last) {
            let id = format!("{}{}", &good[..17], *wrong as char);
            assert!(!is_resident_id(&id), "{id}");
        }
        assert!(!is_resident_id("11010519491231002x"), "lower-case x");
    }

    #[test]
    fn resident_ids_need_a_real_birth_date_and_18_digits() {
        // Check characters computed, so only the date or the shape is wrong.
        for first17 in [
            "62072519800230123", // 30 February
            "62072519000229123", // 1900 is not a leap year
            "62072518991231123", // before 1900
            "62072519801301123", // month 13
            "62072519800100123", // day 0
        ] {
            let id = with_resident_check(first17);
            assert!(!is_resident_id(&id), "{id}");
        }
        assert!(!is_resident_id("62072519800101123"), "17 characters");
        assert!(!is_resident_id("6207251980010112345"), "19 characters");
        assert!(
            !is_resident_id("6207251980A101123X"),
            "a letter among the digits"
        );
        assert!(
            !is_resident_id("６２０７２５１９８００１０１１２３Ｘ"),
            "full-width digits"
        );
    }

    #[test]
    fn unified_social_credit_codes_with_a_correct_check_character_pass() {
        for first17 in [
            "91620725MA7XK3L21",
            "12620725013456789",
            "52620725MJY000123",
        ] {
            let code = with_uscc_check(first17);
            assert!(is_unified_social_credit_code(&code), "{code}");
        }
    }

    #[test]
    fn unified_social_credit_codes_with_a_wrong_check_character_fail() {
        let good = with_uscc_check("91620725MA7XK3L21");
        let last = good.as_bytes()[17];
        for wrong in USCC_CHARSET.iter().filter(|&&c| c != last) {
            let code = format!("{}{}", &good[..17], *wrong as char);
            assert!(!is_unified_social_credit_code(&code), "{code}");
        }
    }

    #[test]
    fn unified_social_credit_codes_refuse_excluded_letters_and_bad_shapes() {
        for letter in ["I", "O", "S", "V", "Z", "a"] {
            let first17 = format!("91620725MA7XK3L2{letter}");
            assert_eq!(uscc_check_char(first17.as_bytes()), None, "{first17}");
            assert!(!is_unified_social_credit_code(&format!("{first17}0")));
        }
        // The division code must be digits even when the check character fits.
        let code = with_uscc_check("9162A725MA7XK3L21");
        assert!(!is_unified_social_credit_code(&code), "{code}");
        assert!(
            !is_unified_social_credit_code("91620725MA7XK3L2"),
            "16 characters"
        );
        assert!(!is_unified_social_credit_code(""), "empty");
    }

    #[test]
    fn a_credit_code_is_not_a_resident_id() {
        let code = with_uscc_check("91620725MA7XK3L21");
        assert!(!is_resident_id(&code), "{code}");
    }

    #[test]
    fn a_fault_names_the_format_the_position_and_the_expected_check_character() {
        let good = with_uscc_check("91620725MA7XK3L21");
        assert_eq!(fault(USCC, &good), None);
        let expected = good.as_bytes()[17] as char;
        let wrong = if expected == '0' { '1' } else { '0' };
        let bad = format!("{}{wrong}", &good[..17]);
        let why = fault(USCC, &bad).expect("a wrong check character");
        assert!(why.contains("cn-uscc") && why.contains("GB 32100"), "{why}");
        assert!(why.contains("position 18"), "{why}");
        assert!(why.contains(&format!("'{expected}'")), "{why}");
        assert!(!why.contains(&bad[..17]), "the value is not quoted: {why}");

        let id = with_resident_check("62072519800101123");
        assert_eq!(fault(RESIDENT_ID, &id), None);
        let expected = id.as_bytes()[17] as char;
        let wrong = if expected == '0' { '1' } else { '0' };
        let why = fault(RESIDENT_ID, &format!("{}{wrong}", &id[..17])).unwrap();
        assert!(
            why.contains("cn-resident-id") && why.contains("GB 11643"),
            "{why}"
        );
        assert!(why.contains(&format!("'{expected}'")), "{why}");

        let why = fault(RESIDENT_ID, "6207251980A101123X").unwrap();
        assert!(why.contains("position 11 must be a digit"), "{why}");
        let why = fault(RESIDENT_ID, &with_resident_check("62072519800230123")).unwrap();
        assert!(why.contains("positions 7–14"), "{why}");
        let why = fault(RESIDENT_ID, "123").unwrap();
        assert!(why.contains("this value has 3"), "{why}");
        let why = fault(USCC, "91620725MA7XK3LI10").unwrap();
        assert!(why.contains("position 16"), "{why}");
        let why = fault(USCC, &with_uscc_check("9162A725MA7XK3L21")).unwrap();
        assert!(why.contains("positions 3–8"), "{why}");
        assert_eq!(fault("email", "x"), None);
    }
}
