//! Processes and runtimes on real programs: a Go server built here with Debian's golang, a
//! CPython server with `OTEL_SERVICE_NAME` in its environment, a Node.js server and a Java
//! server (started before the agent: found by the start-up scan). The agent runs as
//! `nobody`, as it does by default: what it learns of processes it may not read in /proc
//! comes from their exec records.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

/// Builds a Go HTTP server listening on the port given as its argument.
fn build_go_server(dir: &Path) -> (PathBuf, String) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("main.go"),
        "package main\n\nimport (\n\t\"fmt\"\n\t\"net/http\"\n\t\"os\"\n)\n\n\
         func main() {\n\thttp.HandleFunc(\"/\", func(w http.ResponseWriter, r *http.Request) \
         { fmt.Fprint(w, \"ok\") })\n\thttp.ListenAndServe(\"127.0.0.1:\"+os.Args[1], nil)\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("go.mod"),
        "module example.com/goserve\n\ngo 1.18\n",
    )
    .unwrap();
    let bin = dir.join("goserve");
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(dir)
        .env("GOFLAGS", "-buildvcs=false")
        .env("GOTOOLCHAIN", "local")
        .output()
        .expect("go build (golang-go, installed by cross/bootstrap.sh)");
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = Command::new("go")
        .arg("env")
        .arg("GOVERSION")
        .output()
        .unwrap();
    let version = String::from_utf8(version.stdout)
        .unwrap()
        .trim()
        .to_string();
    (bin, version)
}

struct Server {
    proc: Proc,
    port: u16,
}

fn serve(mut cmd: Command, what: &str) -> Server {
    let port = free_port();
    cmd.arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut s = Server {
        proc: Proc(child),
        port,
    };
    assert!(serves(&mut s.proc.0, &[port]), "{what} does not serve");
    s
}

#[test]
fn spans_carry_their_process_program_and_runtime() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    let dir = scratch("process-runtimes", "go");
    let (go_bin, go_version) = build_go_server(&dir);
    let python = std::fs::canonicalize("/usr/bin/python3").expect("Debian's python3");
    let python_version = python
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .strip_prefix("python")
        .unwrap()
        .to_string();
    let java = std::fs::canonicalize("/usr/bin/java").expect("Debian's OpenJDK");
    let java_home = java.parent().unwrap().parent().unwrap();
    let release = std::fs::read_to_string(java_home.join("release")).unwrap();
    let java_version = release
        .lines()
        .find_map(|l| l.strip_prefix("JAVA_RUNTIME_VERSION="))
        .unwrap()
        .trim_matches('"')
        .to_string();

    // Java first: running before the agent starts, it is known from the start-up scan.
    let src = dir.join("Serve.java");
    std::fs::write(
        &src,
        "import com.sun.net.httpserver.HttpServer;\nimport java.net.InetSocketAddress;\n\
         public class Serve { public static void main(String[] a) throws Exception {\n\
         HttpServer s = HttpServer.create(new InetSocketAddress(\"127.0.0.1\", \
         Integer.parseInt(a[0])), 0);\n\
         s.createContext(\"/\", x -> { byte[] b = \"ok\".getBytes(); \
         x.sendResponseHeaders(200, b.length); x.getResponseBody().write(b); x.close(); });\n\
         s.start(); } }\n",
    )
    .unwrap();
    let mut cmd = Command::new("/usr/bin/java");
    cmd.arg(&src);
    let java_server = serve(cmd, "java");

    let traced = Traced::start("process-runtimes", &[]);
    // Go: a root process the agent (nobody) may not read in /proc: named from its exec.
    let go_server = serve(Command::new(&go_bin), "the Go server");
    // CPython as nobody, like the agent: its environment is readable, its service name used.
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.args(["-m", "http.server", "--bind", "127.0.0.1"])
        .env("OTEL_SERVICE_NAME", "inventory")
        .current_dir("/");
    {
        use std::os::unix::process::CommandExt;
        cmd.uid(65534).gid(65534);
    }
    let py_server = serve(cmd, "python3 -m http.server");
    // Node.js installed the way nvm lays it out (`…/versions/node/vX.Y.Z/bin/node`, here a
    // link to the machine's node): a root process, named from its exec path.
    let out = Command::new("/usr/bin/node")
        .arg("--version")
        .output()
        .unwrap();
    let node_version = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let node_dir = dir.join(format!("versions/node/{node_version}/bin"));
    std::fs::create_dir_all(&node_dir).unwrap();
    let node_path = node_dir.join("node");
    let _ = std::fs::remove_file(&node_path);
    std::os::unix::fs::symlink("/usr/bin/node", &node_path).unwrap();
    let mut cmd = Command::new(&node_path);
    cmd.args([
        "-e",
        "require('http').createServer((q, r) => r.end('ok')).listen(+process.argv[1], '127.0.0.1')",
    ]);
    let node_server = serve(cmd, "node");

    for s in [&java_server, &go_server, &py_server, &node_server] {
        for _ in 0..3 {
            curl_port(s.port);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let requests = traced.finish(&[]);
    drop((
        java_server.proc,
        go_server.proc,
        py_server.proc,
        node_server.proc,
    ));
    let all = spans(&requests);
    let server_resource = |port: u16| {
        let p = port.to_string();
        let ours: Vec<&SpanSeen> = all
            .iter()
            .filter(|s| s.kind == "SPAN_KIND_SERVER" && s.attr("server.port") == Some(&p))
            .collect();
        assert_eq!(ours.len(), 3, "server spans on port {port}: {all:#?}");
        ours[0].resource.clone()
    };

    let r = server_resource(go_server.port);
    let go_path = go_bin.to_str().unwrap();
    assert_eq!(attr(&r, "process.runtime.name"), Some("go"), "{r:?}");
    assert_eq!(
        attr(&r, "process.runtime.version"),
        Some(go_version.as_str())
    );
    assert_eq!(attr(&r, "process.executable.path"), Some(go_path));
    assert_eq!(attr(&r, "service.name"), Some("goserve"));

    let r = server_resource(py_server.port);
    assert_eq!(attr(&r, "process.runtime.name"), Some("cpython"), "{r:?}");
    assert_eq!(
        attr(&r, "process.runtime.version"),
        Some(python_version.as_str())
    );
    assert_eq!(attr(&r, "process.executable.path"), python.to_str());
    assert_eq!(attr(&r, "service.name"), Some("inventory"));
    assert_eq!(attr(&r, "process.owner"), Some("nobody"));

    let r = server_resource(node_server.port);
    assert_eq!(attr(&r, "process.runtime.name"), Some("nodejs"), "{r:?}");
    let v = node_version.strip_prefix('v').unwrap();
    assert_eq!(attr(&r, "process.runtime.version"), Some(v));
    // The path resolved, as /proc/PID/exe would give it; the version from the path run.
    let node = std::fs::canonicalize("/usr/bin/node").unwrap();
    assert_eq!(attr(&r, "process.executable.path"), node.to_str());

    let r = server_resource(java_server.port);
    assert_eq!(attr(&r, "process.runtime.name"), Some("java"), "{r:?}");
    assert_eq!(
        attr(&r, "process.runtime.version"),
        Some(java_version.as_str())
    );
    assert_eq!(attr(&r, "process.executable.path"), java.to_str());
    assert_eq!(attr(&r, "service.name"), Some("java"));

    // curl is no runtime of these: it has none.
    let client = all
        .iter()
        .find(|s| s.kind == "SPAN_KIND_CLIENT" && s.process() == "curl")
        .expect("curl's client spans");
    assert_eq!(attr(&client.resource, "process.runtime.name"), None);
    assert_eq!(
        attr(&client.resource, "process.executable.path"),
        Some("/usr/bin/curl")
    );
    assert_no_drops(&requests, &["process_table_full", "decode_error"]);
}
