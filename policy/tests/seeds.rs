//! The policy examples of Pomerium's MCP documents in shared/seeds/, exactly as written there
//! (route YAML re-indented as in the original pages), parsed from YAML and evaluated the way the
//! documents describe them. Plus the examples of Pomerium's "Limit MCP Tool Calling" and PPL
//! pages, which operators will copy.

use mcpgate_policy::{Identity, Policy, Reason, Request};
use serde_json::{json, Value};

/// The `policy` of every route in a gateway/Pomerium config document, compiled.
fn route_policies(yaml: &str) -> Vec<Policy> {
    let doc: Value = serde_yaml_ng::from_str(yaml).unwrap();
    doc["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|route| {
            Policy::compile_optional(route.get("policy")).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

fn person(email: &str) -> Identity {
    Identity {
        user: format!("sub-{email}"),
        email: Some(email.into()),
        groups: vec![],
        claims: json!({"email": email}),
    }
}

/// 000 (mcp-app-demo README) and 001 (pomerium/mcp-servers): "Calling internal MCP server from
/// your app". `policy: {}` lets any signed-in user through.
const CLIENT_AND_SERVER_ROUTES: &str = r#"
routes:
  - from: https://mcp-app-demo.your-domain.com
    to: http://mcp-app-demo:3000
    mcp:
      pass_upstream_access_token: true
    policy: {} # define your policy here
  - from: https://mcp-server.your-domain.com
    to: http://mcp-server.int:8080/mcp
    name: My MCP Server
    mcp: {}
    policy: {} # define your policy here
"#;

/// 002: "Delegate MCP Access to an LLM".
const DELEGATE_TO_LLM: &str = r#"
runtime_flags:
  mcp: true

routes:
  # Your chat app (MCP client)
  - from: https://chat-app.your-domain.com
    to: http://chat-app:3000
    mcp:
      client: {}
    policy: {}

  # MCP servers the LLM can call
  - from: https://db-mcp.your-domain.com
    to: http://db-mcp-server:8080/mcp
    name: Database Server
    mcp:
      server: {}
    policy:
      allow:
        and:
          - domain:
              is: company.com

  # MCP server with upstream OAuth (e.g., GitHub)
  - from: https://github-mcp.your-domain.com
    to: http://github-mcp-server:8080/mcp
    name: GitHub
    mcp:
      server:
        upstream_oauth2:
          client_id: xxxxxxxxxxxx
          client_secret: yyyyyyyyy
          scopes: ['read:user', 'repo']
          endpoint:
            auth_url: 'https://github.com/login/oauth/authorize'
            token_url: 'https://github.com/login/oauth/access_token'
    policy:
      allow:
        and:
          - domain:
              is: company.com
"#;

/// 003: "MCP + Upstream OAuth".
const UPSTREAM_OAUTH: &str = r#"
runtime_flags:
  mcp: true

routes:
  - from: https://github.your-domain.com
    to: http://github-mcp.int:8080/mcp
    name: GitHub
    mcp:
      server:
        upstream_oauth2:
          client_id: xxxxxxxxxxxx
          client_secret: yyyyyyyyy
          scopes: ['read:user', 'user:email']
          endpoint:
            auth_url: 'https://github.com/login/oauth/authorize'
            token_url: 'https://github.com/login/oauth/access_token'
    policy:
      allow:
        and:
          - domain:
              is: company.com
      deny:
        and:
          - mcp_tool:
              starts_with: 'admin_'
"#;

fn session_methods() -> [(&'static str, Option<&'static str>); 6] {
    [
        ("initialize", None),
        ("notifications/initialized", None),
        ("tools/list", None),
        ("tools/call", Some("query")),
        ("prompts/get", Some("summarize")),
        ("resources/read", Some("db://tables/users")),
    ]
}

#[test]
fn empty_policies_allow_any_signed_in_user() {
    let policies = route_policies(CLIENT_AND_SERVER_ROUTES);
    assert_eq!(policies.len(), 2);
    for p in &policies {
        assert!(p.is_unrestricted());
        for who in [person("alice@company.com"), person("eve@anywhere.net")] {
            assert!(p.allows_identity(&who));
            for (method, target) in session_methods() {
                let mut req = Request::new(&who).method(method);
                if let Some(t) = target {
                    req = req.target(t);
                }
                let d = p.evaluate(&req);
                assert!(d.allowed, "{method}");
                assert_eq!(d.reason, Reason::NoPolicy);
            }
        }
    }
}

#[test]
fn delegate_to_llm_domain_policy() {
    let policies = route_policies(DELEGATE_TO_LLM);
    assert_eq!(policies.len(), 3);
    assert!(policies[0].is_unrestricted());
    let alice = person("alice@company.com");
    let eve = person("eve@evilcompany.com");
    for p in &policies[1..] {
        for (method, target) in session_methods() {
            let mut req = Request::new(&alice).method(method);
            if let Some(t) = target {
                req = req.target(t);
            }
            let d = p.evaluate(&req);
            assert!(d.allowed, "{method}");
            assert_eq!(d.reason, Reason::AllowRule("policy.allow.and[0]"));
            let d = p.evaluate(&Request {
                identity: &eve,
                ..req
            });
            assert!(!d.allowed, "{method}");
            assert_eq!(d.reason, Reason::NoAllowRuleMatched("policy.allow.and[0]"));
        }
        // The routes listing shows the servers to alice only.
        assert!(p.allows_identity(&alice));
        assert!(!p.allows_identity(&eve));
        assert!(!p.allows_identity(&Identity::default()));
    }
}

#[test]
fn upstream_oauth_allow_domain_deny_admin_tools() {
    let p = &route_policies(UPSTREAM_OAUTH)[0];
    let alice = person("alice@company.com");
    let bob = person("bob@other.com");

    // The protocol works for company users...
    for (method, target) in session_methods() {
        let mut req = Request::new(&alice).method(method);
        if let Some(t) = target {
            req = req.target(t);
        }
        assert!(p.evaluate(&req).allowed, "{method}");
    }
    // ...except tools starting with admin_.
    let d = p.evaluate(
        &Request::new(&alice)
            .method("tools/call")
            .target("admin_delete_repo"),
    );
    assert!(!d.allowed);
    assert_eq!(d.reason, Reason::DenyRule("policy.deny.and[0]"));
    assert_eq!(d.reason.to_string(), "denied by policy.deny.and[0]");
    assert!(
        p.evaluate(
            &Request::new(&alice)
                .method("tools/call")
                .target("list_admin_repos")
        )
        .allowed
    );
    // Others may do nothing.
    let d = p.evaluate(&Request::new(&bob).method("initialize"));
    assert!(!d.allowed);
    assert_eq!(
        d.reason.to_string(),
        "no allow rule matched (policy.allow.and[0] did not match)"
    );
    // Listings.
    assert!(p.allows_identity(&alice));
    assert!(!p.allows_identity(&bob));
    assert!(p.allows_target(&alice, "tools/call", "search_repos"));
    assert!(!p.allows_target(&alice, "tools/call", "admin_delete_repo"));
    assert!(!p.allows_target(&bob, "tools/call", "search_repos"));
}

fn compile_yaml(yaml: &str) -> Policy {
    let doc: Value = serde_yaml_ng::from_str(yaml).unwrap();
    let value = doc.get("policy").unwrap_or(&doc);
    Policy::compile(value).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn pomerium_limit_mcp_tools_examples() {
    let analyst = Identity {
        groups: vec!["data-analysts".into(), "analysts".into()],
        ..person("ann@company.com")
    };
    let call = |p: &Policy, id: &Identity, tool: &str| {
        p.evaluate(&Request::new(id).method("tools/call").target(tool))
            .allowed
    };
    let method =
        |p: &Policy, id: &Identity, m: &str| p.evaluate(&Request::new(id).method(m)).allowed;

    let block_single = compile_yaml(
        r#"
policy:
  allow:
    and:
      - domain:
          is: company.com
  deny:
    and:
      - mcp_tool:
          is: drop_table
"#,
    );
    assert!(call(&block_single, &analyst, "query"));
    assert!(!call(&block_single, &analyst, "drop_table"));

    let by_prefix = compile_yaml(
        r#"
policy:
  allow:
    and:
      - groups:
          has: analysts
  deny:
    and:
      - mcp_tool:
          starts_with: 'admin_'
"#,
    );
    assert!(call(&by_prefix, &analyst, "query"));
    assert!(!call(&by_prefix, &analyst, "admin_x"));
    assert!(!call(&by_prefix, &person("x@company.com"), "query"));

    let allowlist = compile_yaml(
        r#"
policy:
  allow:
    and:
      - domain:
          is: company.com
  deny:
    and:
      - mcp_tool:
          not_in: ['query', 'list_tables']
"#,
    );
    assert!(call(&allowlist, &analyst, "query"));
    assert!(call(&allowlist, &analyst, "list_tables"));
    assert!(!call(&allowlist, &analyst, "drop_table"));
    for m in [
        "initialize",
        "tools/list",
        "resources/list",
        "prompts/list",
        "ping",
    ] {
        assert!(method(&allowlist, &analyst, m), "{m}");
    }
    // The tools/list response keeps only the allowlisted tools.
    let visible: Vec<_> = ["query", "list_tables", "drop_table"]
        .into_iter()
        .filter(|t| allowlist.allows_target(&analyst, "tools/call", t))
        .collect();
    assert_eq!(visible, ["query", "list_tables"]);

    let combined = compile_yaml(
        r#"
policy:
  allow:
    and:
      - domain:
          is: company.com
      - groups:
          has: 'data-analysts'
  deny:
    or:
      - mcp_tool:
          in: ['update_data', 'drop_table', 'delete_records']
      - mcp_tool:
          starts_with: 'admin_'
"#,
    );
    assert!(call(&combined, &analyst, "query"));
    assert!(!call(&combined, &analyst, "delete_records"));
    assert!(!call(&combined, &analyst, "admin_purge"));
    assert!(!call(&combined, &person("x@company.com"), "query"));
    let d = combined.evaluate(
        &Request::new(&analyst)
            .method("tools/call")
            .target("admin_purge"),
    );
    assert_eq!(d.reason, Reason::DenyRule("policy.deny.or[1]"));
}

#[test]
fn pomerium_ppl_examples() {
    // "At a Glance".
    let p = compile_yaml(
        r#"
allow:
  and:
    - domain:
        is: example.com
deny:
  or:
    - email:
        is: user2@example.com
    - email:
        is: user3@example.com
"#,
    );
    assert!(p.allows_identity(&person("user1@example.com")));
    assert!(!p.allows_identity(&person("user2@example.com")));
    assert!(!p.allows_identity(&person("user3@example.com")));
    assert!(!p.allows_identity(&person("user1@other.com")));

    // String matcher and list matcher examples.
    let admin_at = compile_yaml("allow:\n  and:\n    - email:\n        starts_with: 'admin@'\n");
    assert!(admin_at.allows_identity(&person("admin@x.com")));
    assert!(!admin_at.allows_identity(&person("user@x.com")));
    let listed = compile_yaml(
        "allow:\n  and:\n    - email:\n        in: ['user1@company.com', 'user2.company.com']\n",
    );
    assert!(listed.allows_identity(&person("user1@company.com")));
    assert!(!listed.allows_identity(&person("user2@company.com")));
    let group =
        compile_yaml("allow:\n  and:\n    - groups:\n        has: '00gv40ki4gmtCyl5d4x6'\n");
    let member = Identity {
        groups: vec!["00gv40ki4gmtCyl5d4x6".into()],
        ..person("m@x.com")
    };
    assert!(group.allows_identity(&member));
    assert!(!group.allows_identity(&person("m@x.com")));

    // Claim sub-path.
    let smith = compile_yaml("allow:\n  and:\n    - claim/family_name: Smith\n");
    let mr_smith = Identity {
        claims: json!({"family_name": "Smith"}),
        ..person("s@x.com")
    };
    assert!(smith.allows_identity(&mr_smith));
    assert!(!smith.allows_identity(&person("s@x.com")));
}
