use super::*;

#[test]
fn request_round_trips_as_one_line() {
    let env = Envelope {
        id: 7,
        request: Request::CreateSession {
            device: "dev".into(),
            handle: "s".into(),
            name: "a\nb".into(),
        },
    };
    let line = to_line(&env);
    assert_eq!(
        line.matches('\n').count(),
        1,
        "exactly one terminating newline: {line}"
    );
    assert!(line.contains(r#""op":"create_session""#), "{line}");
    let back: Envelope = serde_json::from_str(&line).unwrap();
    assert_eq!(back, env);
}

#[test]
fn error_outcome_carries_errno_name_and_call() {
    let r = Response {
        id: 3,
        outcome: Outcome::Err(AgentError::syscall("ioctl(X)", 17)),
    };
    let v: serde_json::Value = serde_json::from_str(&to_line(&r)).unwrap();
    assert_eq!(v["err"]["errno"], "EEXIST");
    assert_eq!(v["err"]["call"], "ioctl(X)");
    assert_eq!(serde_json::from_value::<Response>(v).unwrap(), r);
}

#[test]
fn unknown_op_is_a_parse_error_not_a_panic() {
    let r: Result<Envelope, _> = serde_json::from_str(r#"{"id":1,"op":"launch_missiles"}"#);
    assert!(r.is_err());
}

#[test]
fn errno_names_round_trip() {
    for n in [1, 2, 9, 16, 17, 22, 7, 99] {
        assert_eq!(errno_value(errno_name(n)), Some(n));
    }
    assert_eq!(errno_name(4095), "EUNKNOWN");
}
