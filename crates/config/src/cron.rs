//! The one cron parser of the product: `croner`'s (five fields, or six with seconds first),
//! behind a check of our own. croner takes a field with an empty list element (`,` or `1,,2`)
//! as a set that never matches and then searches for the next time second by second, which
//! for a seconds field takes minutes (found by the `cron` fuzz target: `, 0 0 * * *`). Such a
//! field is refused here, before croner sees it.

/// Parses `text` as a cron expression, or says what is wrong with it.
pub fn parse_cron(text: &str) -> Result<croner::Cron, String> {
    if let Some(field) = text
        .split_whitespace()
        .find(|f| f.split(',').any(str::is_empty))
    {
        return Err(format!(
            "field `{field}` has an empty list element (a comma with nothing on one side)"
        ));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(text)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::parse_cron;

    #[test]
    fn an_empty_list_element_is_refused_before_croner_searches_forever() {
        for bad in [
            ", 0 0 * * *",
            "0 , * * *",
            "0 0, * * *",
            "0 0 ,1 * *",
            "0 0 1,,2 * *",
        ] {
            let e = parse_cron(bad).expect_err(bad);
            assert!(e.contains("empty list element"), "{bad}: {e}");
        }
        for good in [
            "0 2 * * *",
            "*/5 * * * *",
            "30 0 2 * * *",
            "0 0 1,15 * *",
            "0 0 * * 5L",
        ] {
            assert!(parse_cron(good).is_ok(), "{good}");
        }
        assert!(parse_cron("0 0 1-0 * *").is_err());
    }
}
