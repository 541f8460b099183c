//! Database tracing end to end on the real kernel: redis-server, PostgreSQL and MariaDB
//! servers with their own command-line clients and Python clients, all started here, the real agent, and the OTLP receiver decoding with the official
//! Python opentelemetry-proto package.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use support::*;

struct Redis {
    proc: std::process::Child,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

/// redis-server on a fresh port (three tries: another test may take the port first).
fn start_redis(test: &str) -> Redis {
    let dir = scratch(test, "redis");
    std::fs::create_dir_all(&dir).unwrap();
    (0..3)
        .find_map(|_| try_redis(&dir))
        .expect("redis-server did not start in three tries")
}

fn try_redis(dir: &std::path::Path) -> Option<Redis> {
    let port = free_port();
    let mut proc = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (installed by cross/bootstrap.sh)");
    serves(&mut proc, &[port]).then_some(Redis { proc, port })
}

/// Runs redis-cli with `args`; its output.
fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Reads from `s` until what was read ends with `end`.
fn read_until(s: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while !got.ends_with(end) {
        let n = s.read(&mut buf).expect("redis answers");
        assert!(n > 0, "redis closed the connection: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    got
}

fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Spans of `process` whose operation is `op` on `port`, by kind, and how many of them
/// carry `error.type`.
fn ops(all: &[SpanSeen], kind: &str, process: &str, port: u16, op: &str) -> (usize, usize) {
    let port = port.to_string();
    let mine: Vec<&SpanSeen> = all
        .iter()
        .filter(|s| {
            s.kind == kind
                && s.process() == process
                && s.attr("server.port") == Some(port.as_str())
                && s.attr("db.operation.name") == Some(op)
        })
        .collect();
    let errors = mine
        .iter()
        .filter(|s| s.attr("error.type").is_some())
        .count();
    (mine.len(), errors)
}

#[test]
fn redis_commands_replies_and_errors_become_spans_and_metrics() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    let redis = start_redis("db-redis");
    let traced = Traced::start("db-redis", &[("OTEL_SERVICE_NAME", "db-test")]);
    let port = redis.port;
    // redis-cli: a connection per command.
    assert_eq!(cli(port, &["SET", "greeting", "sekret-value"]).trim(), "OK");
    for _ in 0..3 {
        assert_eq!(cli(port, &["GET", "greeting"]).trim(), "sekret-value");
    }
    assert_eq!(cli(port, &["GET", "missing-key"]).trim(), "");
    assert!(cli(port, &["LPUSH", "greeting", "x"]).contains("WRONGTYPE"));

    // One connection: a pipeline of four commands in one write (one of them fails), then
    // a value larger than the capture, written and read back.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut pipeline = Vec::new();
    for c in [
        command(&[b"SET", b"p", b"1"]),
        command(&[b"INCR", b"p"]),
        command(&[b"GET", b"p"]),
        command(&[b"INCR", b"greeting"]),
    ] {
        pipeline.extend_from_slice(&c);
    }
    s.write_all(&pipeline).unwrap();
    let got = read_until(&mut s, b"out of range\r\n");
    assert!(got.starts_with(b"+OK\r\n:2\r\n$1\r\n2\r\n-ERR"), "{got:?}");
    let big = vec![b'v'; 100_000];
    s.write_all(&command(&[b"SET", b"big", &big])).unwrap();
    read_until(&mut s, b"+OK\r\n");
    s.write_all(&command(&[b"GET", b"big"])).unwrap();
    let got = read_until(&mut s, b"vvv\r\n");
    assert_eq!(got.len(), "$100000\r\n".len() + 100_000 + 2);
    drop(s);

    let requests = traced.finish(&["sekret", "greeting"]);
    let all = spans(&requests);
    let client = "SPAN_KIND_CLIENT";
    assert_eq!(ops(&all, client, "redis-cli", port, "SET"), (1, 0));
    assert_eq!(ops(&all, client, "redis-cli", port, "GET"), (4, 0));
    assert_eq!(ops(&all, client, "redis-cli", port, "LPUSH"), (1, 1));
    // The test process itself is the second client (its command name is the test's).
    let me = all
        .iter()
        .find(|s| s.kind == client && s.attr("db.operation.name") == Some("INCR"))
        .map(|s| s.process().to_string())
        .expect("the pipelined INCR");
    // The process's name (the test binary's), not its test thread's.
    assert!(me.starts_with("db_e2e"), "{me}");
    assert_eq!(ops(&all, client, &me, port, "SET"), (2, 0));
    assert_eq!(ops(&all, client, &me, port, "INCR"), (2, 1));
    assert_eq!(ops(&all, client, &me, port, "GET"), (2, 0));
    let server = "SPAN_KIND_SERVER";
    assert_eq!(ops(&all, server, "redis-server", port, "SET"), (3, 0));
    assert_eq!(ops(&all, server, "redis-server", port, "GET"), (6, 0));
    assert_eq!(ops(&all, server, "redis-server", port, "LPUSH"), (1, 1));
    assert_eq!(ops(&all, server, "redis-server", port, "INCR"), (2, 1));

    let lpush = all
        .iter()
        .find(|s| s.kind == client && s.attr("db.operation.name") == Some("LPUSH"))
        .unwrap();
    assert_eq!(lpush.name, "LPUSH");
    assert_eq!(lpush.attr("db.system.name"), Some("redis"));
    assert_eq!(lpush.attr("error.type"), Some("WRONGTYPE"));
    assert_eq!(lpush.status, "STATUS_CODE_ERROR");
    assert_eq!(lpush.attr("server.address"), Some("127.0.0.1"));
    assert_eq!(attr(&lpush.resource, "service.name"), Some("redis-cli"));
    let incr = all
        .iter()
        .find(|s| s.kind == server && s.attr("error.type").is_some() && s.name == "INCR")
        .unwrap();
    assert_eq!(incr.attr("error.type"), Some("ERR"));
    // The server process is recognised as the database it is; its clients are not.
    assert_eq!(attr(&incr.resource, "db.system.name"), Some("redis"));
    assert_eq!(attr(&lpush.resource, "db.system.name"), None);

    // The metric counts every client operation, errors by their type.
    let metric = "db.client.operation.duration";
    let count = |op: &str, error: Option<&str>| {
        let mut want = vec![("db.system.name", "redis"), ("db.operation.name", op)];
        let p = port.to_string();
        want.push(("server.port", p.as_str()));
        histogram_count(&requests, metric, &want, error)
    };
    assert_eq!(count("GET", None), 6);
    assert_eq!(count("SET", None), 3);
    assert_eq!(count("INCR", None), 1);
    assert_eq!(count("INCR", Some("ERR")), 1);
    assert_eq!(count("LPUSH", Some("WRONGTYPE")), 1);
    assert_no_drops(&requests, &PROTOCOL_DROPS);
}

/// A server started for one test, as an unprivileged account, in a directory of its own.
struct Server {
    proc: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The uid and gid of a system account.
fn account(name: &str) -> (u32, u32) {
    let id = |flag: &str| {
        let out = Command::new("id").args([flag, name]).output().unwrap();
        assert!(
            out.status.success(),
            "no {name} account: cross/bootstrap.sh"
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

/// A fresh directory owned by `who`.
fn owned_dir(test: &str, who: (u32, u32)) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("telegen-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(who.0), Some(who.1)).unwrap();
    dir
}

/// A self-signed certificate and its key in `dir`, owned by `who`.
fn self_signed(dir: &std::path::Path, who: (u32, u32)) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl: {out:?}");
    for f in [&cert, &key] {
        std::os::unix::fs::chown(f, Some(who.0), Some(who.1)).unwrap();
    }
    (cert, key)
}

/// The newest installed PostgreSQL's programs.
fn postgres_bin(program: &str) -> std::path::PathBuf {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL (installed by cross/bootstrap.sh)")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort();
    let v = versions.last().expect("a PostgreSQL version");
    format!("/usr/lib/postgresql/{v}/bin/{program}").into()
}

/// A PostgreSQL cluster made by initdb (trust authentication, on loopback) and its server
/// on a fresh port, with TLS offered.
fn start_postgres(test: &str) -> Server {
    use std::os::unix::process::CommandExt;
    let who = account("postgres");
    let dir = owned_dir(test, who);
    let data = dir.join("data");
    let out = Command::new(postgres_bin("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
        .uid(who.0)
        .gid(who.1)
        .output()
        .unwrap();
    assert!(out.status.success(), "initdb: {out:?}");
    let (cert, key) = self_signed(&dir, who);
    for _ in 0..3 {
        let port = free_port();
        let mut proc = Command::new(postgres_bin("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "ssl=on", "-c"])
            .arg(format!("ssl_cert_file={}", cert.display()))
            .arg("-c")
            .arg(format!("ssl_key_file={}", key.display()))
            .arg("-k")
            .arg(&dir)
            .uid(who.0)
            .gid(who.1)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if serves(&mut proc, &[port]) {
            return Server { proc, port, dir };
        }
    }
    panic!("postgres did not start in three tries");
}

/// Runs psql with `sql` on `database` in plaintext; its output (it must succeed unless
/// `fails`).
fn psql(port: u16, database: &str, sql: &str, fails: bool) -> String {
    psql_in(port, database, sql, fails, "disable")
}

fn psql_in(port: u16, database: &str, sql: &str, fails: bool, sslmode: &str) -> String {
    let out = Command::new("psql")
        .env("PGSSLMODE", sslmode)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-d", database, "-X", "-A", "-t", "-c", sql])
        .output()
        .expect("psql");
    assert_eq!(out.status.success(), !fails, "psql {sql}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn postgres_simple_and_prepared_statements_become_spans_and_metrics() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    let pg = start_postgres("db-postgres");
    let traced = Traced::start("db-postgres", &[("OTEL_SERVICE_NAME", "db-test")]);
    let port = pg.port;
    // psql: a connection (and a simple query) per statement, in plaintext but one.
    psql(port, "postgres", "CREATE DATABASE shop", false);
    psql(
        port,
        "shop",
        "CREATE TABLE items (id int PRIMARY KEY, name text)",
        false,
    );
    psql(
        port,
        "shop",
        "INSERT INTO items VALUES (1, 'sekret-widget')",
        false,
    );
    for _ in 0..3 {
        let got = psql(port, "shop", "SELECT name FROM items WHERE id = 1", false);
        assert_eq!(got.trim(), "sekret-widget");
    }
    psql(port, "shop", "SELECT * FROM missing_table", true);
    let got = psql_in(port, "shop", "SELECT count(*) FROM items", false, "require");
    assert_eq!(got.trim(), "1");
    // psycopg (Debian's, over libpq): one session over TLS, the extended protocol; a
    // statement prepared once and executed four times, and an insert that violates the key.
    let script = r#"
import psycopg, sys
dsn = f"host=127.0.0.1 port={sys.argv[1]} user=postgres dbname=shop sslmode=require"
with psycopg.connect(dsn, autocommit=True) as c:
    assert c.pgconn.ssl_in_use
    cur = c.cursor()
    for _ in range(4):
        cur.execute("SELECT name FROM items WHERE id = %s", (1,), prepare=True)
        assert cur.fetchall() == [("sekret-widget",)]
    try:
        cur.execute("INSERT INTO items VALUES (%s, %s)", (1, "sekret-again"))
        sys.exit("the duplicate key was accepted")
    except psycopg.errors.UniqueViolation:
        pass
"#;
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script, &port.to_string()])
        .output()
        .expect("python3");
    assert!(out.status.success(), "psycopg (python3-psycopg): {out:?}");

    let requests = traced.finish(&["sekret"]);
    let all = spans(&requests);
    let (client, server) = ("SPAN_KIND_CLIENT", "SPAN_KIND_SERVER");
    assert_eq!(ops(&all, client, "psql", port, "CREATE"), (2, 0));
    assert_eq!(ops(&all, client, "psql", port, "INSERT"), (1, 0));
    assert_eq!(ops(&all, client, "psql", port, "SELECT"), (5, 1));
    assert_eq!(ops(&all, client, "python3", port, "SELECT"), (4, 0));
    assert_eq!(ops(&all, client, "python3", port, "INSERT"), (1, 1));
    assert_eq!(ops(&all, server, "postgres", port, "CREATE"), (2, 0));
    assert_eq!(ops(&all, server, "postgres", port, "INSERT"), (2, 1));
    assert_eq!(ops(&all, server, "postgres", port, "SELECT"), (9, 1));
    for s in all
        .iter()
        .filter(|s| s.kind == server && s.process() == "postgres")
    {
        assert_eq!(attr(&s.resource, "db.system.name"), Some("postgresql"));
    }
    let db_spans = all
        .iter()
        .filter(|s| s.attr("db.system.name") == Some("postgresql"))
        .count();
    assert_eq!(db_spans, 26, "no span for the start-ups and the prepare");

    let find = |process: &str, text: &str| {
        all.iter()
            .find(|s| s.process() == process && s.attr("db.query.text") == Some(text))
            .unwrap_or_else(|| panic!("no span of {process} with {text}"))
    };
    let select = find("psql", "SELECT name FROM items WHERE id = ?");
    assert_eq!(select.name, "SELECT shop");
    assert_eq!(select.attr("db.namespace"), Some("shop"));
    assert_eq!(select.attr("server.address"), Some("127.0.0.1"));
    assert_eq!(attr(&select.resource, "service.name"), Some("psql"));
    let missing = find("psql", "SELECT * FROM missing_table");
    assert_eq!(missing.attr("db.response.status_code"), Some("42P01"));
    assert_eq!(missing.attr("error.type"), Some("42P01"));
    assert_eq!(missing.status, "STATUS_CODE_ERROR");
    // Through TLS (the OpenSSL uprobes), both ends.
    let prepared = find("python3", "SELECT name FROM items WHERE id = $1");
    assert_eq!(prepared.kind, client);
    assert_eq!(find("postgres", "SELECT count(*) FROM items").kind, server);
    assert_eq!(find("psql", "SELECT count(*) FROM items").kind, client);
    let dup = find("postgres", "INSERT INTO items VALUES ($1, $2)");
    assert_eq!(dup.kind, server);
    assert_eq!(dup.attr("db.response.status_code"), Some("23505"));
    let created = find("psql", "CREATE DATABASE shop");
    assert_eq!(created.attr("db.namespace"), Some("postgres"));

    let metric = "db.client.operation.duration";
    let p = port.to_string();
    let count = |op: &str, error: Option<&str>| {
        let want = [
            ("db.system.name", "postgresql"),
            ("db.operation.name", op),
            ("db.namespace", "shop"),
            ("server.port", p.as_str()),
        ];
        histogram_count(&requests, metric, &want, error)
    };
    assert_eq!(count("SELECT", None), 8);
    assert_eq!(count("SELECT", Some("42P01")), 1);
    assert_eq!(count("INSERT", None), 1);
    assert_eq!(count("INSERT", Some("23505")), 1);
    assert_no_drops(&requests, &PROTOCOL_DROPS);
}

/// A MariaDB server made by mariadb-install-db, on a fresh loopback port, with TLS
/// offered; the grant tables are skipped, so any account connects without a password.
fn start_mariadb(test: &str) -> Server {
    let who = account("mysql");
    let dir = owned_dir(test, who);
    let data = dir.join("data");
    let out = Command::new("mariadb-install-db")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .args(["--user=mysql", "--skip-test-db"])
        .output()
        .expect("mariadb-install-db (installed by cross/bootstrap.sh)");
    assert!(out.status.success(), "mariadb-install-db: {out:?}");
    let (cert, key) = self_signed(&dir, who);
    for _ in 0..3 {
        let port = free_port();
        let mut proc = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.join("sock").display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--port={port}"))
            .arg(format!("--ssl-cert={}", cert.display()))
            .arg(format!("--ssl-key={}", key.display()))
            .args([
                "--user=mysql",
                "--bind-address=127.0.0.1",
                "--skip-grant-tables",
            ])
            .args(["--skip-log-bin", "--innodb-buffer-pool-size=16M"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if serves(&mut proc, &[port]) {
            return Server { proc, port, dir };
        }
    }
    panic!("mariadbd did not start in three tries");
}

/// Runs the mariadb client with `sql` on `database` in plaintext; its output (it must
/// succeed unless `fails`).
fn mariadb(port: u16, database: &str, sql: &str, fails: bool) -> String {
    mariadb_in(port, database, sql, fails, "--skip-ssl")
}

fn mariadb_in(port: u16, database: &str, sql: &str, fails: bool, tls: &str) -> String {
    let out = Command::new("mariadb")
        .args(["--no-defaults", "-h", "127.0.0.1", "-P", &port.to_string()])
        .args(["-u", "root", tls])
        .args(["-N", "-B", "-e", sql, database])
        .output()
        .expect("mariadb (the client)");
    assert_eq!(out.status.success(), !fails, "mariadb {sql}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn mariadb_queries_and_prepared_statements_become_spans_and_metrics() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    let db = start_mariadb("db-mariadb");
    let traced = Traced::start("db-mariadb", &[("OTEL_SERVICE_NAME", "db-test")]);
    let port = db.port;
    // The mariadb client: a connection per statement (COM_QUERY), in plaintext but one.
    mariadb(port, "mysql", "CREATE DATABASE shop", false);
    mariadb(
        port,
        "shop",
        "CREATE TABLE items (id int PRIMARY KEY, name text)",
        false,
    );
    mariadb(
        port,
        "shop",
        "INSERT INTO items VALUES (1, \"sekret-widget\")",
        false,
    );
    for _ in 0..3 {
        let got = mariadb(port, "shop", "SELECT name FROM items WHERE id = 1", false);
        assert_eq!(got.trim(), "sekret-widget");
    }
    mariadb(port, "shop", "SELECT * FROM missing_table", true);
    let got = mariadb_in(port, "shop", "SELECT count(*) FROM items", false, "--ssl");
    assert_eq!(got.trim(), "1");
    // Perl's DBD::MariaDB over libmariadb with server-side prepared statements
    // (COM_STMT_PREPARE, then COM_STMT_EXECUTE in the binary protocol).
    let script = r#"
use strict; use DBI;
my $dbh = DBI->connect("DBI:MariaDB:database=shop;host=127.0.0.1;port=$ARGV[0];mariadb_server_prepare=1",
    "root", "", {RaiseError => 1, PrintError => 0});
my $sth = $dbh->prepare("SELECT name FROM items WHERE id = ?");
for (1..4) {
    $sth->execute(1);
    my ($n) = $sth->fetchrow_array;
    die "got $n" unless $n eq "sekret-widget";
    $sth->finish;
}
my $ins = $dbh->prepare("INSERT INTO items VALUES (?, ?)");
eval { $ins->execute(1, "sekret-again") };
die "the duplicate key was accepted" unless $dbh->err == 1062;
$dbh->disconnect;
"#;
    let out = Command::new("perl")
        .args(["-e", script, &port.to_string()])
        .output()
        .expect("perl");
    assert!(
        out.status.success(),
        "DBD::MariaDB (libdbd-mariadb-perl): {out:?}"
    );

    let requests = traced.finish(&["sekret"]);
    let all = spans(&requests);
    let (client, server) = ("SPAN_KIND_CLIENT", "SPAN_KIND_SERVER");
    assert_eq!(ops(&all, client, "mariadb", port, "CREATE"), (2, 0));
    assert_eq!(ops(&all, client, "mariadb", port, "INSERT"), (1, 0));
    assert_eq!(ops(&all, client, "mariadb", port, "SELECT"), (5, 1));
    assert_eq!(ops(&all, client, "perl", port, "SELECT"), (4, 0));
    assert_eq!(ops(&all, client, "perl", port, "INSERT"), (1, 1));
    assert_eq!(ops(&all, server, "mariadbd", port, "CREATE"), (2, 0));
    assert_eq!(ops(&all, server, "mariadbd", port, "INSERT"), (2, 1));
    assert_eq!(ops(&all, server, "mariadbd", port, "SELECT"), (9, 1));
    for s in all
        .iter()
        .filter(|s| s.kind == server && s.process() == "mariadbd")
    {
        assert_eq!(attr(&s.resource, "db.system.name"), Some("mariadb"));
    }
    // Each end saw the same operations (the driver's own SET statements included), and
    // the prepares made none.
    let count = |kind: &str| {
        all.iter()
            .filter(|s| s.kind == kind && s.attr("db.system.name") == Some("mariadb"))
            .count()
    };
    assert_eq!(count(client), count(server));
    assert!(
        !all.iter()
            .any(|s| s.attr("db.system.name") == Some("mysql")),
        "the server's handshake names MariaDB"
    );

    let find = |process: &str, text: &str| {
        all.iter()
            .find(|s| s.process() == process && s.attr("db.query.text") == Some(text))
            .unwrap_or_else(|| panic!("no span of {process} with {text}"))
    };
    let select = find("mariadb", "SELECT name FROM items WHERE id = ?");
    assert_eq!(select.name, "SELECT shop");
    assert_eq!(select.attr("db.namespace"), Some("shop"));
    assert_eq!(attr(&select.resource, "service.name"), Some("mariadb"));
    let missing = find("mariadb", "SELECT * FROM missing_table");
    assert_eq!(missing.attr("db.response.status_code"), Some("1146"));
    assert_eq!(missing.attr("error.type"), Some("1146"));
    assert_eq!(missing.status, "STATUS_CODE_ERROR");
    // The session upgraded to TLS, both ends.
    assert_eq!(find("mariadb", "SELECT count(*) FROM items").kind, client);
    assert_eq!(find("mariadbd", "SELECT count(*) FROM items").kind, server);
    let prepared = find("perl", "SELECT name FROM items WHERE id = ?");
    assert_eq!(prepared.kind, client);
    // The client's literals and the driver's placeholders read alike once obfuscated.
    let mut codes: Vec<Option<&str>> = all
        .iter()
        .filter(|s| {
            s.process() == "mariadbd"
                && s.attr("db.query.text") == Some("INSERT INTO items VALUES (?, ?)")
        })
        .map(|s| s.attr("db.response.status_code"))
        .collect();
    codes.sort();
    assert_eq!(codes, [None, Some("1062")]);
    let created = find("mariadb", "CREATE DATABASE shop");
    assert_eq!(created.attr("db.namespace"), Some("mysql"));

    let metric = "db.client.operation.duration";
    let p = port.to_string();
    let histogram = |op: &str, error: Option<&str>| {
        let want = [
            ("db.system.name", "mariadb"),
            ("db.operation.name", op),
            ("db.namespace", "shop"),
            ("server.port", p.as_str()),
        ];
        histogram_count(&requests, metric, &want, error)
    };
    assert_eq!(histogram("SELECT", None), 8);
    assert_eq!(histogram("SELECT", Some("1146")), 1);
    assert_eq!(histogram("INSERT", None), 1);
    assert_eq!(histogram("INSERT", Some("1062")), 1);
    assert_no_drops(&requests, &PROTOCOL_DROPS);
}
