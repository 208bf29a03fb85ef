//! The real `switchyard` binary: flags, config file, persistence, signals.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::gateway::authorized_client;
use crate::support::processes::signal;
use crate::support::{counter, McpClient};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// A started `switchyard serve`: its bound address and, on a first start, the
/// admin token it printed.
struct Started {
    child: Child,
    addr: String,
    printed_token: Option<String>,
    /// Every line it has written to stdout so far (logs included).
    output: Arc<Mutex<Vec<String>>>,
}

/// Starts `switchyard serve` with JSON logs (test upstreams are on loopback,
/// hence `--allow-private-upstreams`).
async fn start(args: &[&str]) -> Started {
    start_logging(args, "info").await
}

/// [`start`] with this log filter.
async fn start_logging(args: &[&str], filter: &str) -> Started {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args([
            "--port",
            "0",
            "--log-format",
            "json",
            "--allow-private-upstreams",
        ])
        .args(args)
        .env("SWITCHYARD_LOG", filter)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn switchyard");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let output = Arc::new(Mutex::new(Vec::new()));
    let (addr, printed_token) = tokio::time::timeout(Duration::from_secs(30), async {
        let mut token = None;
        while let Some(line) = lines.next_line().await.expect("read log") {
            output.lock().unwrap().push(line.clone());
            // The minted token is printed as a bare line, not logged.
            if line.starts_with("sy_") {
                token = Some(line.trim().to_owned());
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if let Some(a) = v["address"].as_str() {
                return (a.to_owned(), token);
            }
        }
        panic!("switchyard exited before listening");
    })
    .await
    .expect("switchyard starts within 30 s");
    // Keep draining the logs so the child never blocks on a full pipe.
    let sink = Arc::clone(&output);
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    Started {
        child,
        addr,
        printed_token,
        output,
    }
}

/// The admin token a first start wrote next to the database.
fn token_file(dir: &std::path::Path, db_stem: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{db_stem}-admin.token")))
        .expect("admin token file")
        .trim()
        .to_owned()
}

async fn terminate(mut child: Child) -> std::process::ExitStatus {
    let pid = child.id().expect("pid").to_string();
    assert!(signal("TERM", &pid), "SIGTERM not delivered");
    tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits within 15 s of SIGTERM")
        .expect("wait")
}

#[tokio::test]
async fn serve_registers_declared_gateways_persists_and_stops_on_sigterm() {
    let up = counter("counter").await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("catalog.db").display());
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!("[[gateways]]\nname = \"counter\"\nurl = \"{}\"\n", up.url()),
    )
    .unwrap();
    let config = config.to_str().unwrap();

    let Started {
        child,
        addr,
        printed_token,
        ..
    } = start(&["--database-url", &db, "--config", config]).await;
    let token = token_file(dir.path(), "catalog");
    assert_eq!(printed_token.as_deref(), Some(token.as_str()));
    let http = authorized_client(&token);
    let gws: Value = http
        .get(format!("http://{addr}/gateways"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(gws[0]["name"], "counter");
    let mut c = McpClient::connect_as(format!("http://{addr}/mcp"), &token).await;
    assert_eq!(c.counter("counter-increment", json!({"by": 2})).await, 2);
    assert_eq!(up.stats().live_sessions, 1);
    let status = terminate(child).await;
    assert!(status.success(), "{status}");
    assert_eq!(
        up.stats().live_sessions,
        0,
        "shutdown closed the upstream session"
    );

    // The catalog survives a restart (tokens too: no new one is minted); a
    // declared gateway is not registered twice.
    let Started {
        child,
        addr,
        printed_token,
        ..
    } = start(&["--database-url", &db, "--config", config]).await;
    assert_eq!(printed_token, None);
    let gws: Value = http
        .get(format!("http://{addr}/gateways"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(gws.as_array().unwrap().len(), 1);
    let tools: Value = http
        .get(format!("http://{addr}/tools"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tools.as_array().unwrap().len(), 5);
    assert!(terminate(child).await.success());
}

#[tokio::test]
async fn env_vars_configure_and_bad_config_is_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("env.db").display());
    let mut child = Command::new(BIN)
        .args(["serve", "--log-format", "json"])
        .env("SWITCHYARD_PORT", "0")
        .env("SWITCHYARD_DATABASE_URL", &db)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = None;
    let listening = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("sy_") {
                printed = Some(line);
            } else if line.contains("listening") {
                return line;
            }
        }
        panic!("exited before listening");
    })
    .await
    .unwrap();
    assert!(listening.contains("listening"), "{listening}");
    assert!(
        dir.path().join("env.db").exists(),
        "SQLite file created from SWITCHYARD_DATABASE_URL"
    );
    // The first start minted an admin token: printed once, and in an owner-only file.
    let file = dir.path().join("env-admin.token");
    let saved = std::fs::read_to_string(&file).unwrap();
    assert_eq!(printed.as_deref(), Some(saved.trim()));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "token file mode {mode:o}");
    }
    child.kill().await.unwrap();

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "prot = 4444\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config", bad.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown field") && err.contains("prot"),
        "{err}"
    );

    let help = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--host",
        "--port",
        "--database-url",
        "--config",
        "--log-format",
        "SWITCHYARD_PORT",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[tokio::test]
async fn sighup_applies_a_changed_config_file_and_keeps_serving() {
    let a = counter("a").await;
    let b = counter("b").await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("catalog.db").display());
    let config = dir.path().join("switchyard.toml");
    const OLD_SECRET: &str = "old-jwt-secret-old-jwt-secret-0123";
    const NEW_SECRET: &str = "new-jwt-secret-new-jwt-secret-4567";
    std::fs::write(
        &config,
        format!(
            "jwt_secret = \"{OLD_SECRET}\"\n[[gateways]]\nname = \"a\"\nurl = \"{}\"\n",
            a.url()
        ),
    )
    .unwrap();
    let Started { child, addr, .. } =
        start(&["--database-url", &db, "--config", config.to_str().unwrap()]).await;
    let jwt_status = |secret: &'static str| {
        let url = format!("http://{addr}/tools");
        async move {
            let now = jsonwebtoken::get_current_timestamp();
            let jwt = jsonwebtoken::encode(
                &jsonwebtoken::Header::default(),
                &json!({"sub": "ops", "exp": now + 600}),
                &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
            )
            .unwrap();
            authorized_client(&jwt)
                .get(url)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(jwt_status(OLD_SECRET).await, 200);
    assert_eq!(jwt_status(NEW_SECRET).await, 401);
    let token = token_file(dir.path(), "catalog");
    let http = authorized_client(&token);
    // One API-registered gateway, which reload must leave alone.
    let api = http
        .post(format!("http://{addr}/gateways"))
        .json(&json!({"name": "api", "url": b.url()}))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 201);
    let mut c = McpClient::connect_as(format!("http://{addr}/mcp"), &token).await;
    c.counter("a-increment", json!({})).await;
    c.counter("api-increment", json!({})).await;
    assert_eq!(a.stats().live_sessions, 1);

    std::fs::write(
        &config,
        format!(
            "jwt_secret = \"{NEW_SECRET}\"\n[[gateways]]\nname = \"b\"\nurl = \"{}\"\n",
            b.url()
        ),
    )
    .unwrap();
    let pid = child.id().unwrap().to_string();
    assert!(signal("HUP", &pid), "SIGHUP not delivered");
    let names = || async {
        let gws: Value = http
            .get(format!("http://{addr}/gateways"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut n: Vec<String> = gws
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap().to_owned())
            .collect();
        n.sort();
        n
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while names().await != ["api", "b"] && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(names().await, ["api", "b"]);
    assert_eq!(
        a.stats().live_sessions,
        0,
        "the removed gateway's session closed"
    );
    // Reload closed every upstream session; the downstream session lives on.
    assert_eq!(
        c.counter("api-get", json!({})).await,
        0,
        "rebuilt lazily after reload"
    );
    assert_eq!(c.counter("b-increment", json!({})).await, 1);
    // The rotated JWT secret is in force, the old one no longer.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while jwt_status(NEW_SECRET).await != 200 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(jwt_status(NEW_SECRET).await, 200);
    assert_eq!(jwt_status(OLD_SECRET).await, 401);
    assert!(terminate(child).await.success());
}

#[tokio::test]
async fn token_create_mints_a_token_the_running_gateway_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("catalog.db").display());
    let Started { child, addr, .. } = start(&["--database-url", &db]).await;
    let create = |extra: &[&str]| {
        Command::new(BIN)
            .args(["token", "create", "--database-url", &db])
            .args(extra)
            .output()
    };
    let out = create(&["--name", "ci", "--expires", "30d"]).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("sy_") && token.len() == 67, "{token:?}");
    let note = String::from_utf8_lossy(&out.stderr);
    assert!(note.contains("ci") && note.contains("expires"), "{note}");

    // Minted while the gateway runs: found on first use; not an admin.
    let ci = authorized_client(&token);
    let tools = ci.get(format!("http://{addr}/tools")).send().await.unwrap();
    assert_eq!(tools.status(), 200);
    let write = ci
        .post(format!("http://{addr}/servers"))
        .json(&json!({"name": "s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 403);
    let out = create(&["--name", "ops", "--admin"]).await.unwrap();
    let ops = authorized_client(String::from_utf8(out.stdout).unwrap().trim());
    let listed: Value = ops
        .get(format!("http://{addr}/tokens"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{listed}");
    assert!(names.contains(&"ci") && names.contains(&"ops"), "{listed}");

    let bad = create(&["--name", "x", "--expires", "soon"]).await.unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--expires"));

    // `token list` shows them without secrets; `token revoke` stops the
    // running gateway from accepting one within seconds, its sessions ended.
    let token_cmd = |args: &[&str]| {
        Command::new(BIN)
            .arg("token")
            .args(args)
            .args(["--database-url", &db])
            .output()
    };
    let out = token_cmd(&["list", "--json"]).await.unwrap();
    assert!(out.status.success());
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ci_id = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ci")
        .and_then(|t| t["id"].as_str())
        .unwrap()
        .to_owned();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&token[3..]));
    let table = token_cmd(&["list"]).await.unwrap();
    assert!(String::from_utf8_lossy(&table.stdout).contains(&ci_id));
    let session = McpClient::connect_as(format!("http://{addr}/mcp"), &token).await;
    let sid = session.session.clone().unwrap();
    let sessions = || async {
        ops.get(format!("http://{addr}/admin/sessions"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
            .to_string()
    };
    assert!(sessions().await.contains(&sid));
    assert!(token_cmd(&["revoke", &ci_id])
        .await
        .unwrap()
        .status
        .success());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = || async {
        ci.get(format!("http://{addr}/tools"))
            .send()
            .await
            .unwrap()
            .status()
    };
    while status().await == 200 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status().await, 401);
    assert!(
        !sessions().await.contains(&sid),
        "the session went with the token"
    );
    let again = token_cmd(&["revoke", &ci_id]).await.unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no API token"));
    assert!(terminate(child).await.success());
}

#[tokio::test]
async fn auth_none_is_refused_off_loopback_and_help_names_the_token_file() {
    let out = Command::new(BIN)
        .args([
            "serve", "--auth", "none", "--host", "0.0.0.0", "--port", "0",
        ])
        .args(["--database-url", "sqlite::memory:"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("auth") && err.contains("loopback") && err.contains("0.0.0.0"),
        "{err}"
    );
    let help = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "--auth",
        "--admin-token-file",
        "switchyard-admin.token",
        "--jwt-secret",
        "--jwks-file",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

/// Upstream credentials are encrypted in the database file, decrypted after a
/// restart with the generated key file, never logged (debug logs included),
/// and a database whose key is gone is refused at start with a message.
#[tokio::test]
async fn upstream_credentials_are_encrypted_at_rest_never_logged_and_need_their_key() {
    use switchyard_fixtures::{CounterServer, Options, RequiredAuth};
    const BEARER: &str = "bearer-at-rest-7f3a";
    const QUERY: &str = "query-at-rest-91c2";
    let bearer_up = CounterServer::start(Options {
        name: "b".into(),
        auth: RequiredAuth::Header {
            name: "authorization".into(),
            value: format!("Bearer {BEARER}"),
        },
        ..Options::default()
    })
    .await
    .unwrap();
    let query_up = CounterServer::start(Options {
        name: "q".into(),
        auth: RequiredAuth::Query {
            key: "key".into(),
            value: QUERY.into(),
        },
        ..Options::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("catalog.db");
    let db = format!("sqlite://{}", db_path.display());
    let key_file = dir.path().join("catalog-secret.key");

    let started = start_logging(&["--database-url", &db], "debug").await;
    let token = token_file(dir.path(), "catalog");
    let http = authorized_client(&token);
    let base = format!("http://{}", started.addr);
    for body in [
        json!({"name": "b", "url": bearer_up.url(), "auth_type": "bearer", "auth_token": BEARER}),
        json!({"name": "q", "url": query_up.url(), "auth_type": "query_param",
               "auth_query_param_key": "key", "auth_query_param_value": QUERY}),
    ] {
        let resp = http
            .post(format!("{base}/gateways"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    }
    let mut c = McpClient::connect_as(format!("{base}/mcp"), &token).await;
    assert_eq!(c.counter("b-increment", json!({})).await, 1);
    assert_eq!(c.counter("q-increment", json!({})).await, 1);
    // A failing call logs the upstream's error: still without the secret.
    query_up.stop();
    let failed = c
        .request(
            "tools/call",
            json!({"name": "q-increment", "arguments": {}}),
        )
        .await;
    assert!(failed.body["error"].is_object(), "{}", failed.body);
    let output = Arc::clone(&started.output);
    assert!(terminate(started.child).await.success());

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "generated key file is owner-only");
    }
    let logs = output.lock().unwrap().join("\n");
    assert!(logs.contains("generated the key"), "{logs}");
    for secret in [BEARER, QUERY] {
        assert!(!logs.contains(secret), "{secret} logged:\n{logs}");
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path == key_file {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} in plain text in {}",
                path.display()
            );
        }
    }

    // Restart with the key file: the credentials work again.
    let started = start(&["--database-url", &db]).await;
    let mut c = McpClient::connect_as(format!("http://{}/mcp", started.addr), &token).await;
    assert_eq!(c.counter("b-increment", json!({})).await, 1);
    assert!(terminate(started.child).await.success());

    // Without the key, the gateway refuses to start and says what it needs.
    let key = std::fs::read_to_string(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    // A start that must fail: what it printed.
    let refused = |key: Option<String>| {
        let db = db.clone();
        async move {
            let mut cmd = Command::new(BIN);
            cmd.args(["serve", "--port", "0", "--database-url", &db]);
            if let Some(k) = key {
                cmd.env("SWITCHYARD_SECRET_KEY", k);
            }
            let out = cmd.output().await.unwrap();
            assert!(!out.status.success());
            String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout)
        }
    };
    let text = refused(None).await;
    assert!(text.contains("SWITCHYARD_SECRET_KEY"), "{text}");
    assert!(
        !key_file.exists(),
        "no new key is made up over stored secrets"
    );

    // A wrong key is refused too; the right one from the environment works.
    let text = refused(Some("00".repeat(32))).await;
    assert!(text.contains("wrong key"), "{text}");
    let mut child = Command::new(BIN)
        .args(["serve", "--port", "0", "--database-url", &db])
        .env("SWITCHYARD_SECRET_KEY", key.trim())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let listening = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("listening") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(listening, "starts with the key from the environment");
    let status = terminate(child).await;
    assert!(status.success(), "{status}");
}
