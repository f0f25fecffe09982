//! The request's W3C trace context goes onto its call-outs to the token service, through the
//! mock host: valid headers are copied, invalid ones dropped.

use mcpgate_config::HeaderMode::{self, HoldBody, HoldHeaders};

use super::host::Action::Pause;
use super::test_gateway::{Gateway, Setup};

const MODES: [HeaderMode; 2] = [HoldHeaders, HoldBody];
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// The credentials call-out of a server-route request sent with `extra` headers.
fn credentials_call(mode: HeaderMode, extra: &[(&str, &str)]) -> super::mock_host::SentCall {
    let gw = Gateway::new(Setup::new(mode).internal());
    gw.post("/everything/mcp", &gw.token(), extra);
    let ex = gw.exchange();
    assert_eq!(gw.headers(&ex, false), Pause);
    let call = gw.last_call();
    assert_eq!(call.header(":path"), Some("/internal/v1/credentials"));
    call
}

#[test]
fn the_credentials_call_out_carries_the_requests_trace_context() {
    for mode in MODES {
        let call = credentials_call(
            mode,
            &[
                ("traceparent", TRACEPARENT),
                ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
            ],
        );
        assert_eq!(call.header("traceparent"), Some(TRACEPARENT), "{mode:?}");
        assert_eq!(
            call.header("tracestate"),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        );
    }
}

#[test]
fn invalid_trace_context_is_dropped() {
    for mode in MODES {
        // No trace context: none sent.
        let call = credentials_call(mode, &[]);
        assert_eq!(call.header("traceparent"), None);
        assert_eq!(call.header("tracestate"), None);
        // A malformed traceparent: neither header goes on.
        let call = credentials_call(
            mode,
            &[
                (
                    "traceparent",
                    "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
                ),
                ("tracestate", "congo=t61rcWkgMzE"),
            ],
        );
        assert_eq!(call.header("traceparent"), None, "{mode:?}");
        assert_eq!(call.header("tracestate"), None);
        // A valid traceparent with a malformed tracestate: only the traceparent.
        let call = credentials_call(
            mode,
            &[
                ("traceparent", TRACEPARENT),
                ("tracestate", "not a list member"),
            ],
        );
        assert_eq!(call.header("traceparent"), Some(TRACEPARENT));
        assert_eq!(call.header("tracestate"), None);
        // Too long.
        let long = format!("{TRACEPARENT}{}", "-x".repeat(300));
        let call = credentials_call(mode, &[("traceparent", long.as_str())]);
        assert_eq!(call.header("traceparent"), None);
    }
}
