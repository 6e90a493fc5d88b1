//! The Luhn check digit (ISO/IEC 7812), as card numbers and NPIs carry it.

/// Whether `digits`, check digit last, pass the Luhn check: every char is an ASCII digit and the
/// Luhn sum of the whole string is divisible by 10. An empty string is not valid.
pub fn is_valid(digits: &str) -> bool {
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && sum(digits, false) % 10 == 0
}

/// The check digit to append to `payload` (ASCII digits) so that the result [`is_valid`].
///
/// # Panics
///
/// If `payload` holds anything but ASCII digits.
pub fn check_digit(payload: &str) -> u8 {
    assert!(
        payload.bytes().all(|b| b.is_ascii_digit()),
        "a Luhn payload is ASCII digits only"
    );
    // The check digit will be the rightmost digit, so the payload's own last digit is doubled.
    let digit = (10 - sum(payload, true) % 10) % 10;
    digit as u8
}

/// The Luhn sum of ASCII `digits`: from the right, every second digit is doubled (and 9 taken
/// off when that makes it two digits), starting with the rightmost one when `double_last`.
fn sum(digits: &str, double_last: bool) -> u32 {
    digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if (i % 2 == 1) != double_last {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn card_numbers() {
        assert!(is_valid("4242424242424242"));
        assert!(!is_valid("4242424242424241"));
        assert_eq!(check_digit("424242424242424"), 2);
    }

    #[test]
    fn npi_check_digit_over_prefix_80840() {
        // CMS's published example: NPI 1234567893.
        assert_eq!(check_digit("80840123456789"), 3);
        assert!(is_valid("808401234567893"));
        assert!(!is_valid("808401234567890"));
    }

    #[test]
    fn anything_but_digits_is_not_valid() {
        assert!(!is_valid(""));
        assert!(is_valid("0"));
        assert!(!is_valid("4242 4242 4242 4242"));
        assert!(!is_valid("+0"));
        assert!(!is_valid("٠"));
    }

    proptest! {
        #[test]
        fn payload_and_its_check_digit_are_valid(payload in "[0-9]{0,40}") {
            let digit = check_digit(&payload);
            prop_assert!(digit <= 9);
            let full = format!("{payload}{digit}");
            prop_assert!(is_valid(&full));
        }

        #[test]
        fn any_other_last_digit_is_not_valid(payload in "[0-9]{0,40}", other in 0u8..10) {
            prop_assume!(other != check_digit(&payload));
            let full = format!("{payload}{other}");
            prop_assert!(!is_valid(&full));
        }
    }
}
