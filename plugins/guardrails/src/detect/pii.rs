//! Personal data, found by hand-written linear scanners and then **validated**: a payment card
//! must pass the Luhn check, an IBAN its ISO 13616 mod-97 checksum and its country's length, a
//! US SSN the SSA's allocation rules, an IP address must parse. Candidates glued to letters or
//! digits (`ORD-4155550132`, `x1.2.3.4`) are part of a longer identifier and are not matches.
//!
//! All scanners work on ASCII bytes, so every span starts and ends on a character boundary.

use super::Span;

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether the byte before `i` leaves `i` at the start of a token (not inside a word, nor
/// glued to an identifier by `-`, `#`, `/` or `.` after a word character).
fn starts_token(t: &[u8], i: usize) -> bool {
    if i == 0 {
        return true;
    }
    let p = t[i - 1];
    // `#` marks an id (`#4155550100`), never the start of a number that stands alone.
    if is_word(p) || p == b'#' {
        return false;
    }
    if matches!(p, b'-' | b'/' | b'.' | b'+') {
        return i < 2 || !is_word(t[i - 2]);
    }
    true
}

/// Whether the token ends at `i` (the same rule, looking forward).
fn ends_token(t: &[u8], i: usize) -> bool {
    match t.get(i) {
        None => true,
        Some(&b) if is_word(b) => false,
        Some(&(b'-' | b'/' | b'.' | b'#')) => t.get(i + 1).is_none_or(|&n| !is_word(n)),
        Some(_) => true,
    }
}

/// `local@domain.tld`, with a dotted domain whose last label is letters only.
pub fn email(text: &str, out: &mut Vec<Span>) {
    let t = text.as_bytes();
    let local = |b: u8| b.is_ascii_alphanumeric() || b"._%+-".contains(&b);
    let domain = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-';
    let mut from = 0;
    while let Some(at) = t[from..].iter().position(|&b| b == b'@').map(|p| p + from) {
        from = at + 1;
        let mut s = at;
        while s > 0 && local(t[s - 1]) {
            s -= 1;
        }
        while s < at && t[s] == b'.' {
            s += 1;
        }
        let mut e = at + 1;
        while e < t.len() && domain(t[e]) {
            e += 1;
        }
        while e > at + 1 && matches!(t[e - 1], b'.' | b'-') {
            e -= 1;
        }
        if s == at || e <= at + 1 {
            continue;
        }
        let d = &text[at + 1..e];
        let labels: Vec<&str> = d.split('.').collect();
        let tld = labels.last().copied().unwrap_or_default();
        let ok = labels.len() >= 2
            && labels
                .iter()
                .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
            && tld.len() >= 2
            && tld.bytes().all(|b| b.is_ascii_alphabetic());
        if ok {
            out.push(Span { start: s, end: e });
            from = e;
        }
    }
}

/// A run of digits with single separators from `seps` between them, from `i`: its end and
/// the digits.
fn digit_run(t: &[u8], i: usize, seps: &[u8], max: usize) -> (usize, Vec<u8>) {
    let mut digits = Vec::new();
    let mut e = i;
    let mut j = i;
    while j < t.len() && digits.len() <= max {
        if t[j].is_ascii_digit() {
            digits.push(t[j] - b'0');
            j += 1;
            e = j;
        } else if seps.contains(&t[j]) && t.get(j + 1).is_some_and(u8::is_ascii_digit) {
            j += 1;
        } else {
            break;
        }
    }
    (e, digits)
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// 13–19 digits, optionally grouped by single spaces or hyphens, passing the Luhn check.
pub fn payment_card(text: &str, out: &mut Vec<Span>) {
    let t = text.as_bytes();
    let mut i = 0;
    while i < t.len() {
        if !t[i].is_ascii_digit() || !starts_token(t, i) {
            i += 1;
            continue;
        }
        let (e, digits) = digit_run(t, i, b" -", 19);
        if (13..=19).contains(&digits.len()) && ends_token(t, e) && luhn(&digits) {
            out.push(Span { start: i, end: e });
        }
        i = e.max(i + 1);
    }
}

/// Phone numbers in the two forms that are phone numbers and not just digits: international
/// (`+` and 8–15 digits, with spaces, hyphens, dots or parentheses) and North American with
/// punctuation (`(415) 555-0100`, `415-555-0100`, `415.555.0100`; area code and exchange not
/// starting with 0 or 1). Bare digit runs (`4155550100`) are not matched: they are as often
/// order numbers and ids.
pub fn phone(text: &str, out: &mut Vec<Span>) {
    let t = text.as_bytes();
    let mut i = 0;
    while i < t.len() {
        if let Some(e) = international(t, i).or_else(|| north_american(t, i)) {
            out.push(Span { start: i, end: e });
            i = e;
        } else {
            i += 1;
        }
    }
}

fn international(t: &[u8], i: usize) -> Option<usize> {
    if t[i] != b'+' || (i > 0 && (is_word(t[i - 1]) || t[i - 1] == b'+')) {
        return None;
    }
    let mut j = i + 1;
    let mut digits = 0;
    let mut end = j;
    while j < t.len() && digits <= 15 {
        match t[j] {
            b'0'..=b'9' => {
                digits += 1;
                j += 1;
                end = j;
            }
            b' ' | b'-' | b'.' | b'(' | b')' if j > i + 1 => j += 1,
            _ => break,
        }
    }
    ((8..=15).contains(&digits)
        && t.get(i + 1).is_some_and(u8::is_ascii_digit)
        && ends_token(t, end))
    .then_some(end)
}

fn north_american(t: &[u8], i: usize) -> Option<usize> {
    if !starts_token(t, i) {
        return None;
    }
    let d3 = |j: usize| t.get(j..j + 3).filter(|s| s.iter().all(u8::is_ascii_digit));
    let (area, mut j) = if t[i] == b'(' {
        let a = d3(i + 1)?;
        (t.get(i + 4) == Some(&b')')).then_some(())?;
        let j = if t.get(i + 5) == Some(&b' ') {
            i + 6
        } else {
            i + 5
        };
        (a, j)
    } else {
        let a = d3(i)?;
        let sep = *t.get(i + 3)?;
        matches!(sep, b'-' | b'.' | b' ').then_some(())?;
        (a, i + 4)
    };
    let exchange = d3(j)?;
    j += 3;
    matches!(t.get(j), Some(b'-' | b'.' | b' ')).then_some(())?;
    j += 1;
    let line = t.get(j..j + 4)?;
    line.iter().all(u8::is_ascii_digit).then_some(())?;
    j += 4;
    let plausible = area[0] >= b'2' && exchange[0] >= b'2';
    (plausible && ends_token(t, j)).then_some(j)
}

/// `AAA-GG-SSSS` with the hyphens, as the SSA allocates them: area not 000, 666 or 9xx, group
/// not 00, serial not 0000.
pub fn us_ssn(text: &str, out: &mut Vec<Span>) {
    let t = text.as_bytes();
    let shape = |s: &[u8]| {
        s.len() == 11
            && s.iter().enumerate().all(|(k, b)| {
                if k == 3 || k == 6 {
                    *b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            })
    };
    for i in 0..t.len().saturating_sub(10) {
        let s = &t[i..i + 11];
        if !shape(s) || !starts_token(t, i) || !ends_token(t, i + 11) {
            continue;
        }
        let area = &s[0..3];
        let valid = area != b"000"
            && area != b"666"
            && area[0] != b'9'
            && &s[4..6] != b"00"
            && &s[7..11] != b"0000";
        if valid {
            out.push(Span {
                start: i,
                end: i + 11,
            });
        }
    }
}

/// Dotted-quad IPv4 (octets 0–255, no leading zeros) and IPv6 (whatever `std` parses, with at
/// least two colons).
pub fn ip_address(text: &str, out: &mut Vec<Span>) {
    let t = text.as_bytes();
    let mut i = 0;
    while i < t.len() {
        let hexish = |b: u8| b.is_ascii_hexdigit() || b == b':' || b == b'.';
        if !hexish(t[i]) || (i > 0 && (is_word(t[i - 1]) || matches!(t[i - 1], b'.' | b':'))) {
            i += 1;
            continue;
        }
        let mut e = i;
        while e < t.len() && hexish(t[e]) {
            e += 1;
        }
        // A sentence's full stop is not part of the address.
        while e > i && t[e - 1] == b'.' {
            e -= 1;
        }
        let cand = &text[i..e];
        let followed_by_word = t.get(e).is_some_and(|&b| is_word(b));
        if !followed_by_word && (ipv4(cand) || ipv6(cand)) {
            out.push(Span { start: i, end: e });
        }
        i = e.max(i + 1);
    }
}

fn ipv4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
                && p.parse::<u16>().is_ok_and(|n| n <= 255)
        })
}

fn ipv6(s: &str) -> bool {
    s.bytes().filter(|&b| b == b':').count() >= 2 && s.parse::<std::net::Ipv6Addr>().is_ok()
}

/// IBAN lengths per country (ISO 13616 registry); countries not listed are not matched.
#[rustfmt::skip]
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24), ("AE", 23), ("AL", 28), ("AT", 20), ("AZ", 28), ("BA", 20), ("BE", 16),
    ("BG", 22), ("BH", 22), ("BR", 29), ("CH", 21), ("CR", 22), ("CY", 28), ("CZ", 24),
    ("DE", 22), ("DK", 18), ("DO", 28), ("EE", 20), ("EG", 29), ("ES", 24), ("FI", 18),
    ("FO", 18), ("FR", 27), ("GB", 22), ("GE", 22), ("GI", 23), ("GL", 18), ("GR", 27),
    ("GT", 28), ("HR", 21), ("HU", 28), ("IE", 22), ("IL", 23), ("IS", 26), ("IT", 27),
    ("JO", 30), ("KW", 30), ("KZ", 20), ("LB", 28), ("LI", 21), ("LT", 20), ("LU", 20),
    ("LV", 21), ("MC", 27), ("MD", 24), ("ME", 22), ("MK", 19), ("MR", 27), ("MT", 31),
    ("MU", 30), ("NL", 18), ("NO", 15), ("PK", 24), ("PL", 28), ("PS", 29), ("PT", 25),
    ("QA", 29), ("RO", 24), ("RS", 22), ("SA", 24), ("SE", 24), ("SI", 19), ("SK", 24),
    ("SM", 27), ("TN", 24), ("TR", 26), ("UA", 29), ("VG", 24), ("XK", 20),
];

/// An IBAN, electronic (`DE89370400440532013000`) or printed in groups of four separated by
/// single spaces, with its country's length and a valid mod-97 checksum.
pub fn iban(text: &str, out: &mut Vec<Span>) {
    let t = text.as_bytes();
    let mut i = 0;
    while i + 4 <= t.len() {
        let head = &t[i..i + 4];
        let looks = head[0].is_ascii_uppercase()
            && head[1].is_ascii_uppercase()
            && head[2].is_ascii_digit()
            && head[3].is_ascii_digit()
            && starts_token(t, i);
        let len = || {
            IBAN_LENGTHS
                .iter()
                .find(|(c, _)| c.as_bytes() == &head[..2])
                .map(|(_, l)| *l)
        };
        if looks
            && let Some(len) = len()
            && let Some(e) = iban_at(t, i, len)
        {
            out.push(Span { start: i, end: e });
            i = e;
            continue;
        }
        i += 1;
    }
}

/// The end of an IBAN of `len` characters starting at `i`, if the text holds one.
fn iban_at(t: &[u8], i: usize, len: usize) -> Option<usize> {
    let mut chars = Vec::with_capacity(len);
    let mut j = i;
    while chars.len() < len && j < t.len() {
        let b = t[j];
        if b.is_ascii_uppercase() || b.is_ascii_digit() {
            chars.push(b);
            j += 1;
        } else if b == b' ' && chars.len().is_multiple_of(4) && !chars.is_empty() {
            j += 1;
        } else {
            return None;
        }
    }
    (chars.len() == len && ends_token(t, j) && mod97(&chars)).then_some(j)
}

fn mod97(chars: &[u8]) -> bool {
    let rotated = chars[4..].iter().chain(&chars[..4]);
    let mut r: u32 = 0;
    for &c in rotated {
        let v = if c.is_ascii_digit() {
            u32::from(c - b'0')
        } else {
            u32::from(c - b'A') + 10
        };
        r = if v >= 10 {
            (r * 100 + v) % 97
        } else {
            (r * 10 + v) % 97
        };
    }
    r == 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::found;

    #[test]
    fn cards_need_the_luhn_check_and_a_token_of_their_own() {
        assert_eq!(
            found(payment_card, "pay with 4111 1111 1111 1111, thanks"),
            ["4111 1111 1111 1111"]
        );
        assert_eq!(
            found(payment_card, "card 5500-0000-0000-0004."),
            ["5500-0000-0000-0004"]
        );
        // 16 digits that fail Luhn; a Luhn-valid number glued into a longer id.
        assert!(found(payment_card, "ref 4111 1111 1111 1112 ok").is_empty());
        assert!(found(payment_card, "ORD-4111111111111111").is_empty());
        assert!(found(payment_card, "41111111111111110000000").is_empty());
    }

    #[test]
    fn phones_need_a_phone_s_shape_not_just_digits() {
        assert_eq!(
            found(phone, "call +1 415 555 0100 now"),
            ["+1 415 555 0100"]
        );
        assert_eq!(found(phone, "or (415) 555-0100."), ["(415) 555-0100"]);
        assert_eq!(found(phone, "or 415-555-0100"), ["415-555-0100"]);
        assert_eq!(found(phone, "tel:+44 20 7946 0958"), ["+44 20 7946 0958"]);
        assert!(found(phone, "order 4155550100 shipped").is_empty());
        assert!(found(phone, "order ORD-415-555-0100 shipped").is_empty());
        assert!(found(phone, "id #415-555-0100").is_empty());
        assert!(
            found(phone, "version 123-456-7890").is_empty(),
            "area code 1xx"
        );
    }

    #[test]
    fn ibans_need_their_country_length_and_checksum() {
        assert_eq!(
            found(iban, "IBAN DE89 3704 0044 0532 0130 00 please"),
            ["DE89 3704 0044 0532 0130 00"]
        );
        assert_eq!(
            found(iban, "GB82WEST12345698765432"),
            ["GB82WEST12345698765432"]
        );
        assert!(found(iban, "DE89 3704 0044 0532 0130 01").is_empty());
        assert!(found(iban, "ZZ89370400440532013000").is_empty());
    }

    #[test]
    fn ssns_follow_the_allocation_rules() {
        assert_eq!(found(us_ssn, "ssn 123-45-6789."), ["123-45-6789"]);
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "912-12-3456",
            "123-00-4567",
            "123-45-0000",
        ] {
            assert!(found(us_ssn, bad).is_empty(), "{bad}");
        }
        assert!(found(us_ssn, "A123-45-6789").is_empty());
    }

    #[test]
    fn emails_and_ip_addresses() {
        assert_eq!(
            found(email, "mail bob.smith+x@mail.example.com."),
            ["bob.smith+x@mail.example.com"]
        );
        assert!(found(email, "user@localhost and @handle").is_empty());
        assert_eq!(found(ip_address, "from 192.168.1.20."), ["192.168.1.20"]);
        assert_eq!(found(ip_address, "v6 2001:db8::1 here"), ["2001:db8::1"]);
        assert!(found(ip_address, "version 1.2.3.4.5 and 256.1.1.1 and 01.2.3.4").is_empty());
        assert!(found(ip_address, "at 12:30:45").is_empty());
    }
}
