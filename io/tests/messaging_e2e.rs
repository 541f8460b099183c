//! Message-broker tracing end to end on the real kernel: mosquitto, mosquitto_pub and
//! mosquitto_sub (MQTT 3.1.1 and 5.0, QoS 0, 1 and 2), and rabbitmq-server with Python's pika
//! (AMQP 0-9-1), all started here, the real agent, and the OTLP receiver decoding with the
//! official Python opentelemetry-proto package.

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// The broker listens on MQTT's own port: that is how the kernel programs recognise the
/// broker's end, whose reads start one byte at a time.
const PORT: u16 = 1883;

struct Mosquitto(std::process::Child);

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_mosquitto(test: &str) -> Mosquitto {
    assert!(
        TcpStream::connect(("127.0.0.1", PORT)).is_err(),
        "port {PORT} is taken: this test needs its own MQTT broker there"
    );
    let conf = scratch(test, "mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {PORT} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto (installed by cross/bootstrap.sh)");
    wait_for_port(PORT, "mosquitto");
    Mosquitto(child)
}

fn publish(version: &str, qos: &str, message: &str) {
    let ok = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &PORT.to_string(), "-V", version])
        .args(["-t", "sensors/42/temp", "-q", qos, "-m", message])
        .status()
        .expect("mosquitto_pub");
    assert!(ok.success(), "mosquitto_pub -q {qos} -V {version}");
}

/// Spans of `process` whose operation is `op`, by kind, on the broker's port.
fn ops(all: &[SpanSeen], kind: &str, process: &str, op: &str) -> Vec<SpanSeen> {
    all.iter()
        .filter(|s| {
            s.kind == kind
                && s.process() == process
                && s.attr("server.port") == Some("1883")
                && s.attr("messaging.operation.name") == Some(op)
        })
        .cloned()
        .collect()
}

#[test]
fn mqtt_publish_receive_and_subscribe_become_spans_and_metrics() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    let _broker = start_mosquitto("mq-mqtt");
    let traced = Traced::start(
        "mq-mqtt",
        &[
            ("OTEL_SERVICE_NAME", "mq-test"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    );
    // A subscriber for every QoS, until it has five messages.
    // Line-buffered, so that its SUBACK line arrives before it exits.
    let mut sub = Command::new("stdbuf")
        .args(["-oL", "mosquitto_sub"])
        .args(["-h", "127.0.0.1", "-p", &PORT.to_string(), "-V", "mqttv311"])
        .args(["-t", "sensors/#", "-q", "2", "-C", "5", "-d", "-W", "30"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub");
    let mut lines = BufReader::new(sub.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.expect("mosquitto_sub output").contains("SUBACK") {
            break;
        }
    }
    publish("mqttv311", "0", "sekret-0");
    publish("mqttv311", "0", "sekret-1");
    publish("mqttv311", "1", "sekret-2");
    publish("5", "1", "sekret-3");
    publish("5", "2", "sekret-4");
    let got: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(sub.wait().unwrap().success());
    assert_eq!(
        got.iter().filter(|l| l.starts_with("sekret-")).count(),
        5,
        "{got:?}"
    );

    // The broker finishes its side (the QoS 2 handshake with a subscriber that is leaving,
    // its close) on its own time: wait for its five publish spans, at most 10 s, before
    // stopping the agent.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let all = spans(&traced.receiver.requests());
        if ops(&all, "SPAN_KIND_PRODUCER", "mosquitto", "publish").len() >= 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let requests = traced.finish(&["sekret"]);
    let all = spans(&requests);
    let (producer, consumer, client) = (
        "SPAN_KIND_PRODUCER",
        "SPAN_KIND_CONSUMER",
        "SPAN_KIND_CLIENT",
    );
    let published = ops(&all, producer, "mosquitto_pub", "publish");
    assert_eq!(published.len(), 5);
    for s in &published {
        assert_eq!(s.name, "publish sensors/{id}/temp");
        assert_eq!(s.attr("messaging.system"), Some("mqtt"));
        assert_eq!(s.attr("messaging.operation.type"), Some("send"));
        assert_eq!(
            s.attr("messaging.destination.name"),
            Some("sensors/42/temp")
        );
        assert_eq!(s.attr("server.address"), Some("127.0.0.1"));
        assert_eq!(s.attr("error.type"), None);
        assert_eq!(attr(&s.resource, "service.name"), Some("mosquitto_pub"));
    }
    assert_eq!(ops(&all, consumer, "mosquitto_sub", "receive").len(), 5);
    let subscribed = ops(&all, client, "mosquitto_sub", "subscribe");
    assert_eq!(subscribed.len(), 1);
    assert_eq!(
        subscribed[0].attr("messaging.destination.name"),
        Some("sensors/#")
    );
    // The broker receives each message and publishes it to the subscriber.
    assert_eq!(ops(&all, consumer, "mosquitto", "receive").len(), 5);
    let broker: Vec<(String, Option<String>)> = ops(&all, producer, "mosquitto", "publish")
        .iter()
        .map(|s| (s.name.clone(), s.attr("error.type").map(str::to_string)))
        .collect();
    assert_eq!(broker.len(), 5, "{broker:?}");

    let metric = "messaging.client.operation.duration";
    let count = |process: &str, op: &str| {
        let want = [
            ("process.executable.name", process),
            ("messaging.operation.name", op),
            ("messaging.system", "mqtt"),
        ];
        histogram_count(&requests, metric, &want, None)
    };
    assert_eq!(count("mosquitto_pub", "publish"), 5);
    assert_eq!(count("mosquitto_sub", "receive"), 5);
    assert_eq!(count("mosquitto_sub", "subscribe"), 1);
    assert_eq!(
        count("mosquitto", "publish"),
        0,
        "the broker is not a client"
    );
    assert_no_drops(&requests, &PROTOCOL_DROPS);
}

/// A RabbitMQ broker of the test's own: its node, ports (AMQP, distribution, epmd) and
/// files, run as the rabbitmq account in a process group killed at the end.
struct Rabbit {
    proc: std::process::Child,
    port: u16,
    epmd: u16,
    dir: std::path::PathBuf,
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        let group = format!("-{}", self.proc.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.proc.wait();
        // The Erlang port mapper the node started outlives it; it refuses to stop while the
        // dying node is still registered, so ask again for up to 5 s.
        for _ in 0..50 {
            let out = Command::new("epmd")
                .env("ERL_EPMD_PORT", self.epmd.to_string())
                .arg("-kill")
                .output();
            match out {
                Ok(o) if String::from_utf8_lossy(&o.stdout).contains("Killed") => break,
                Ok(o) if !o.status.success() && o.stdout.is_empty() => break,
                Err(_) => break,
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_rabbit(test: &str) -> Rabbit {
    use std::os::unix::process::CommandExt;
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "rabbitmq"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "no rabbitmq account: cross/bootstrap.sh"
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let (uid, gid) = (id("-u"), id("-g"));
    for attempt in 0..3 {
        let name = format!("telegen-{test}-{}-{attempt}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        let (port, dist, epmd) = (free_port(), free_port(), free_port());
        let path = |name: &str| dir.join(name).display().to_string();
        let mut proc = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server")
            .env("HOME", &dir)
            .env("RABBITMQ_NODENAME", format!("telegen{port}@localhost"))
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("ERL_EPMD_PORT", epmd.to_string())
            .env("RABBITMQ_MNESIA_BASE", path("mnesia"))
            .env("RABBITMQ_LOG_BASE", path("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", path("plugins"))
            .env("RABBITMQ_PID_FILE", path("pid"))
            .current_dir(&dir)
            .uid(uid)
            .gid(gid)
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rabbitmq-server (installed by cross/bootstrap.sh)");
        // The broker takes seconds to boot: up to 60 s.
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if proc.try_wait().ok().flatten().is_some() || started.elapsed().as_secs() > 60 {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let rabbit = Rabbit {
            proc,
            port,
            epmd,
            dir,
        };
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return rabbit;
        }
    }
    panic!("rabbitmq-server did not start in three tries");
}

#[test]
fn amqp_publish_deliver_and_get_become_spans_and_metrics() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    let rabbit = start_rabbit("mq-amqp");
    let traced = Traced::start("mq-amqp", &[("OTEL_SERVICE_NAME", "mq-test")]);
    // pika (PyPI): three plain publishes to the default exchange, one on a channel in
    // confirm mode, a get that finds a message, three deliveries, a get that finds none.
    let script = r#"
import pika, sys
c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", int(sys.argv[1])))
ch = c.channel()
ch.queue_declare("orders")
for i in range(3):
    ch.basic_publish("", "orders", b"sekret-%d" % i)
ch.confirm_delivery()
ch.basic_publish("", "orders", b"sekret-confirmed")
assert ch.basic_get("orders", auto_ack=True)[2] == b"sekret-0"
got = []
def on(ch_, m, p, body):
    got.append(body)
    ch_.basic_ack(m.delivery_tag)
    if len(got) == 3:
        ch_.stop_consuming()
ch.basic_consume("orders", on)
ch.start_consuming()
assert got == [b"sekret-1", b"sekret-2", b"sekret-confirmed"], got
assert ch.basic_get("orders", auto_ack=True)[0] is None
c.close()
"#;
    let out = Command::new(python())
        .args(["-c", script, &rabbit.port.to_string()])
        .output()
        .expect("python (the venv of cross/bootstrap.sh)");
    assert!(out.status.success(), "pika: {out:?}");
    let requests = traced.finish(&["sekret"]);

    let all = spans(&requests);
    let amqp: Vec<&SpanSeen> = all
        .iter()
        .filter(|s| s.attr("messaging.system") == Some("rabbitmq"))
        .collect();
    let mut seen: Vec<(&str, &str, &str, Option<&str>)> = amqp
        .iter()
        .map(|s| {
            let op = s.attr("messaging.operation.name").unwrap_or("");
            let dest = s.attr("messaging.destination.name").unwrap_or("");
            let key = s.attr("messaging.rabbitmq.destination.routing_key");
            (op, s.kind.as_str(), dest, key)
        })
        .collect();
    seen.sort();
    let (p, c, k) = (
        "SPAN_KIND_PRODUCER",
        "SPAN_KIND_CONSUMER",
        "SPAN_KIND_CLIENT",
    );
    let d = "amq.default";
    let o = Some("orders");
    assert_eq!(
        seen,
        [
            ("get", k, "orders", None),
            ("get", k, "orders", None),
            ("publish", p, d, o),
            ("publish", p, d, o),
            ("publish", p, d, o),
            ("publish", p, d, o),
            ("receive", c, d, o),
            ("receive", c, d, o),
            ("receive", c, d, o),
        ]
    );
    for s in &amqp {
        assert_eq!(s.process(), "python");
        assert_eq!(
            s.attr("server.port"),
            Some(rabbit.port.to_string().as_str())
        );
        assert!(s.attr("error.type").is_none());
    }
    let publish = amqp
        .iter()
        .find(|s| s.name == "publish amq.default")
        .unwrap();
    assert_eq!(publish.attr("messaging.operation.type"), Some("send"));

    let metric = "messaging.client.operation.duration";
    let count = |op: &str| {
        let want = [
            ("messaging.system", "rabbitmq"),
            ("messaging.operation.name", op),
        ];
        histogram_count(&requests, metric, &want, None)
    };
    assert_eq!(
        (count("publish"), count("get"), count("receive")),
        (4, 2, 3)
    );
    assert_no_drops(&requests, &PROTOCOL_DROPS);
}

/// The test's Kafka broker (io/tests/support/kafka_broker.py): its port.
struct KafkaBroker {
    proc: std::process::Child,
    port: u16,
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

/// `mode`: "" (classic versions), `--flexible` or `--topic-ids` (see the script).
fn start_kafka(mode: &str) -> KafkaBroker {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/kafka_broker.py");
    let mut cmd = Command::new(python());
    cmd.arg(script);
    if !mode.is_empty() {
        cmd.arg(mode);
    }
    let mut proc = cmd
        .stdout(Stdio::piped())
        .spawn()
        .expect("python (the venv of cross/bootstrap.sh)");
    let mut line = String::new();
    BufReader::new(proc.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the broker prints its port");
    KafkaBroker { proc, port }
}

#[test]
fn kafka_produce_and_fetch_become_spans_and_metrics() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    // Debian has no Kafka: a broker of the test's own, with the classic encodings (Produce
    // v8, Fetch v11), the flexible ones (Produce v9, Fetch v12), and one that offers the
    // newest (Produce and Fetch v13, by topic id) with topic ids in Metadata v12, which the
    // agent reads; kafka-python 3.0 itself stays at Produce v9 and Fetch v12 there.
    let classic = start_kafka("");
    let flexible = start_kafka("--flexible");
    let ids = start_kafka("--topic-ids");
    let traced = Traced::start("mq-kafka", &[("OTEL_SERVICE_NAME", "mq-test")]);
    // kafka-python (PyPI): three sends that succeed, one the broker refuses, then a
    // consumer reading the partition from its start.
    let script = r#"
import sys
from kafka import KafkaProducer, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
server = f"127.0.0.1:{sys.argv[1]}"
p = KafkaProducer(bootstrap_servers=server, enable_idempotence=False, linger_ms=0, acks=1, retries=0)
for i in range(3):
    p.send("orders", b"sekret-%d" % i).get(timeout=10)
try:
    p.send("orders", b"reject-sekret").get(timeout=10)
    sys.exit("the broker accepted the batch it refuses")
except KafkaError:
    pass
p.close()
c = KafkaConsumer(bootstrap_servers=server, group_id=None, enable_auto_commit=False, consumer_timeout_ms=2000)
tp = TopicPartition("orders", 0)
c.assign([tp])
c.seek(tp, 0)
got = [m.value for m in c]
assert got == [b"sekret-0", b"sekret-1", b"sekret-2"], got
c.close()
"#;
    for broker in [&classic, &flexible, &ids] {
        let out = Command::new(python())
            .args(["-c", script, &broker.port.to_string()])
            .output()
            .expect("python");
        assert!(out.status.success(), "kafka-python: {out:?}");
    }
    let requests = traced.finish(&["sekret"]);

    let all = spans(&requests);
    for broker in [&classic, &flexible, &ids] {
        let port = broker.port.to_string();
        let mine: Vec<&SpanSeen> = all
            .iter()
            .filter(|s| {
                s.attr("messaging.system") == Some("kafka")
                    && s.attr("server.port") == Some(port.as_str())
            })
            .collect();
        let sends: Vec<&&SpanSeen> = mine
            .iter()
            .filter(|s| s.attr("messaging.operation.name") == Some("send"))
            .collect();
        assert_eq!(sends.len(), 4, "port {port}: {mine:?}");
        for s in &sends {
            assert_eq!(s.kind, "SPAN_KIND_PRODUCER");
            assert_eq!(s.name, "send orders");
            assert_eq!(s.attr("messaging.destination.name"), Some("orders"));
            assert_eq!(s.attr("messaging.destination.partition.id"), Some("0"));
            assert_eq!(s.attr("messaging.operation.type"), Some("send"));
        }
        let refused: Vec<Option<&str>> = sends.iter().map(|s| s.attr("error.type")).collect();
        assert_eq!(
            refused.iter().filter(|e| **e == Some("87")).count(),
            1,
            "{refused:?}"
        );
        // The consumer polls until it has waited 2 s without records: a few fetches.
        let polls: Vec<&&SpanSeen> = mine
            .iter()
            .filter(|s| s.attr("messaging.operation.name") == Some("poll"))
            .collect();
        assert!(!polls.is_empty(), "port {port}: no fetch span");
        assert!(polls.iter().all(|s| s.kind == "SPAN_KIND_CLIENT"
            && s.attr("messaging.operation.type") == Some("receive")));
        // The broker holds an empty fetch up to 500 ms: the consumer may close with one
        // outstanding, which ends with its connection.
        let errors: Vec<Option<&str>> = polls.iter().map(|s| s.attr("error.type")).collect();
        assert!(
            errors
                .iter()
                .all(|e| e.is_none() || *e == Some("connection_closed"))
                && errors.iter().filter(|e| e.is_some()).count() <= 1,
            "{errors:?}"
        );
        assert!(
            polls
                .iter()
                .any(|s| s.attr("messaging.destination.name") == Some("orders")),
            "the first fetch names its topic"
        );
        let metric = "messaging.client.operation.duration";
        let want = [
            ("messaging.system", "kafka"),
            ("messaging.operation.name", "send"),
            ("server.port", port.as_str()),
        ];
        assert_eq!(histogram_count(&requests, metric, &want, None), 3);
        // INVALID_RECORD.
        let refused = histogram_count(&requests, metric, &want, Some("87"));
        assert_eq!(refused, 1);
    }
    assert_no_drops(&requests, &PROTOCOL_DROPS);
}
