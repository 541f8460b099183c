//! Message-broker tracing end to end on the real kernel: mosquitto, mosquitto_pub and
//! mosquitto_sub started here (MQTT 3.1.1 and 5.0, QoS 0, 1 and 2), the real agent, and the
//! OTLP receiver decoding with the official Python opentelemetry-proto package.

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
    let receiver = Receiver::start("mq-mqtt");
    let mut agent = start_agent(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint()),
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
        let all = spans(&receiver.requests());
        if ops(&all, "SPAN_KIND_PRODUCER", "mosquitto", "publish").len() >= 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _) = terminate(&mut agent, Duration::from_secs(5));
    assert!(status.success(), "exit status {status:?}");
    let requests = receiver.requests();
    for r in &requests {
        assert!(r.get("error").is_none(), "receiver could not decode: {r}");
        assert!(
            !r.to_string().contains("sekret"),
            "a payload left the agent: {r}"
        );
    }
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
    assert_no_drops(
        &requests,
        &[
            "protocol_desync",
            "db_pipeline_full",
            "db_table_full",
            "kernel_ring_full",
        ],
    );
}
