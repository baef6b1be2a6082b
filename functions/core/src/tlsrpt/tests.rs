use super::*;

#[test]
fn records_give_their_report_addresses() {
    assert_eq!(
        parse_record("v=TLSRPTv1; rua=mailto:tls@example.com").unwrap(),
        ["mailto:tls@example.com"]
    );
    assert_eq!(
        parse_record("v=TLSRPTv1;rua=mailto:a@example.com, https://r.example/tls ;x=y;").unwrap(),
        ["mailto:a@example.com", "https://r.example/tls"]
    );
    for bad in [
        "",
        "v=TLSRPTv2; rua=mailto:a@example.com",
        "rua=mailto:a@example.com; v=TLSRPTv1",
        "v=TLSRPTv1",
        "v=TLSRPTv1; rua=",
        "v=TLSRPTv1; nonsense",
        "v=spf1 -all",
    ] {
        assert!(parse_record(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn days_are_utc_dates() {
    assert_eq!(day_of(0), "1970-01-01");
    assert_eq!(day_of(1_796_601_599), "2026-12-06");
    assert_eq!(day_of(1_796_601_600), "2026-12-07");
}

fn failure(kind: &str, mx: &str) -> Failure {
    Failure {
        result_type: kind.into(),
        sending_ip: Some("192.0.2.1".into()),
        mx: mx.into(),
        receiving_ip: Some("198.51.100.7".into()),
        reason: None,
    }
}

#[test]
fn the_report_has_the_rfc_fields_and_merged_counts() {
    let policy = Policy {
        kind: "tlsa".into(),
        strings: vec!["3 1 1 00ff".into()],
        domain: "example.org".into(),
        mx_hosts: vec!["mx.example.org".into()],
    };
    let mut a = Tally::new(policy.clone());
    a.ok = 3;
    a.fail(failure("validation-failure", "mx.example.org"), 1);
    let mut b = Tally::new(policy);
    b.ok = 2;
    b.fail(failure("validation-failure", "mx.example.org"), 2);
    b.fail(failure("starttls-not-supported", "mx.example.org"), 1);
    a.merge(b);
    assert_eq!((a.ok, a.failures(), a.details.len()), (5, 4, 2));

    let meta = ReportMeta {
        organization: "mx.example.com",
        contact: "postmaster@example.com",
        report_id: "2026-12-06_example.org@mx.example.com",
        day: "2026-12-06",
    };
    let json = report_json(&meta, &[a, Tally::new(Policy::none("example.org"))]);
    assert_eq!(json["date-range"]["start-datetime"], "2026-12-06T00:00:00Z");
    assert_eq!(json["date-range"]["end-datetime"], "2026-12-06T23:59:59Z");
    assert_eq!(json["report-id"], "2026-12-06_example.org@mx.example.com");
    let first = &json["policies"][0];
    assert_eq!(first["policy"]["policy-type"], "tlsa");
    assert_eq!(first["policy"]["policy-string"][0], "3 1 1 00ff");
    assert_eq!(first["policy"]["mx-host"][0], "mx.example.org");
    assert_eq!(first["summary"]["total-successful-session-count"], 5);
    assert_eq!(first["summary"]["total-failure-session-count"], 4);
    let detail = &first["failure-details"][0];
    assert_eq!(detail["result-type"], "validation-failure");
    assert_eq!(detail["failed-session-count"], 3);
    assert_eq!(detail["receiving-mx-hostname"], "mx.example.org");
    assert_eq!(detail["sending-mta-ip"], "192.0.2.1");
    let none = &json["policies"][1]["policy"];
    assert_eq!(none["policy-type"], "no-policy-found");
    assert!(none.get("policy-string").is_none() && none.get("mx-host").is_none());
}

#[test]
fn failure_kinds_beyond_the_limit_are_still_counted() {
    let mut t = Tally::new(Policy::none("example.org"));
    for i in 0..(MAX_DETAILS + 5) {
        t.fail(
            failure("validation-failure", &format!("mx{i}.example.org")),
            1,
        );
    }
    assert_eq!(t.details.len(), MAX_DETAILS);
    assert_eq!(t.failures(), (MAX_DETAILS + 5) as u64);
}
