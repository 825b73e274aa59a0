//! ANSI colour: on when asked, off when asked, and the automatic decision honours
//! `NO_COLOR` (tested through the decision function, not the process environment).

#![cfg(feature = "console")]

mod console_support;

use std::ffi::OsStr;

use console_support::*;
use tracewire::report::ConsoleReporter;

fn rendered(color: bool) -> String {
    let console = ConsoleReporter::builder()
        .writer(std::io::sink())
        .width(120)
        .color(color)
        .build();
    let mut out = Vec::new();
    console.render(&checkout_trace(), &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn colour_on_paints_errors_red_and_keeps_the_layout() {
    let colored = rendered(true);
    assert!(colored.contains('\u{1b}'));
    // The error span's name and its gRPC status are red.
    assert!(
        colored.contains("\u{1b}[31mpayment.Pay/Charge"),
        "{colored}"
    );
    assert!(colored.contains("\u{1b}[31mUNAVAILABLE"), "{colored}");
    // Without the escapes it is the colourless output, column for column.
    let mut stripped = String::new();
    let mut chars = colored.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            stripped.push(c);
        }
    }
    assert_eq!(stripped, rendered(false));
    assert_fits(&stripped, 120);
}

#[test]
fn client_errors_are_yellow() {
    use tracewire::span::SpanKind;
    let spans = [span(1, 0, "api", SpanKind::Server, "GET /x", 0, 1_000)
        .attr("http.response.status_code", 404)];
    let console = ConsoleReporter::builder()
        .writer(std::io::sink())
        .color(true)
        .build();
    let mut out = Vec::new();
    console.render(&spans, &mut out);
    assert!(String::from_utf8(out).unwrap().contains("\u{1b}[33m404"));
}

#[test]
fn colour_off_writes_no_escape() {
    assert!(!rendered(false).contains('\u{1b}'));
}

#[test]
fn automatic_colour_needs_a_terminal_and_no_no_color() {
    assert!(ConsoleReporter::auto_color(true, None));
    assert!(
        ConsoleReporter::auto_color(true, Some(OsStr::new(""))),
        "empty NO_COLOR is unset"
    );
    assert!(!ConsoleReporter::auto_color(true, Some(OsStr::new("1"))));
    assert!(
        !ConsoleReporter::auto_color(true, Some(OsStr::new("false"))),
        "any value counts"
    );
    assert!(!ConsoleReporter::auto_color(false, None));
}

#[test]
fn a_writer_is_not_a_terminal_so_it_gets_no_colour_by_default() {
    let console = ConsoleReporter::builder().writer(std::io::sink()).build();
    let mut out = Vec::new();
    console.render(&checkout_trace(), &mut out);
    assert!(!String::from_utf8(out).unwrap().contains('\u{1b}'));
}
