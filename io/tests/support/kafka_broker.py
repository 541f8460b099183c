"""A Kafka broker just real enough for a client library, for the tests (Debian has no Kafka).

One topic, `orders`, with one partition kept in memory; any other topic is unknown, and a
batch holding the bytes `reject` is refused (INVALID_RECORD). It
answers ApiVersions, Metadata, ListOffsets, Produce and Fetch, decoding requests and encoding
responses with kafka-python's own protocol classes (Apache Kafka's message schemas), at the
versions the client picks among those advertised: `--flexible` advertises the current ones
(Produce v9, Fetch v12: compact encodings and tagged fields), `--topic-ids` the newest
(Produce and Fetch v13, which name topics by the ids Metadata v12 gives), otherwise classic
ones (Produce v8, Fetch v11). It listens on 127.0.0.1, prints its port, and serves until killed.
"""

import socket
import struct
import sys
import threading
import time
import uuid
from io import BytesIO

from kafka.protocol.consumer import FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse
from kafka.protocol.metadata import ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse
from kafka.protocol.producer import ProduceRequest, ProduceResponse

TOPIC = "orders"
TOPIC_ID = uuid.UUID("7e1e9b8a-5a5a-4c4c-8d8d-0123456789ab")
IDS = "--topic-ids" in sys.argv
FLEXIBLE = "--flexible" in sys.argv or IDS
# api key: (request class, response class, highest version advertised)
APIS = {
    0: (ProduceRequest, ProduceResponse, 13 if IDS else 9 if FLEXIBLE else 8),
    1: (FetchRequest, FetchResponse, 13 if IDS else 12 if FLEXIBLE else 11),
    2: (ListOffsetsRequest, ListOffsetsResponse, 5),
    3: (MetadataRequest, MetadataResponse, 12 if IDS else 9 if FLEXIBLE else 8),
    18: (ApiVersionsRequest, ApiVersionsResponse, 3),
}


def topic_of(t):
    # A topic by name, or (Produce and Fetch v13 on) by id.
    name = getattr(t, "name", None) or getattr(t, "topic", None)
    if not name and getattr(t, "topic_id", None) == TOPIC_ID:
        return TOPIC
    return name
log = []  # record batches, each with its base offset
lock = threading.Lock()


def next_offset():
    if not log:
        return 0
    base, batch = log[-1]
    # lastOffsetDelta: at byte 23 of a record batch.
    return base + struct.unpack(">i", batch[23:27])[0] + 1


def respond(api, version, req, port):
    _, resp, _ = APIS[api]
    if api == 18:
        keys = [resp.ApiVersion(api_key=k, min_version=0, max_version=v) for k, (_, _, v) in sorted(APIS.items())]
        return resp[version](error_code=0, api_keys=keys, throttle_time_ms=0)
    if api == 3:
        names = [t.name for t in (req.topics or [])] or [TOPIC]
        Topic = resp.MetadataResponseTopic
        topics = []
        for name in names:
            known = name == TOPIC
            parts = [Topic.MetadataResponsePartition(
                error_code=0, partition_index=0, leader_id=0, leader_epoch=0, replica_nodes=[0],
                isr_nodes=[0], offline_replicas=[])] if known else []
            topics.append(Topic(error_code=0 if known else 3, name=name, topic_id=TOPIC_ID if known else None,
                                is_internal=False, partitions=parts))
        broker = resp.MetadataResponseBroker(node_id=0, host="127.0.0.1", port=port, rack=None)
        return resp[version](
            throttle_time_ms=0, brokers=[broker], cluster_id="telegen", controller_id=0, topics=topics)
    if api == 2:
        topics = []
        for t in req.topics:
            parts = []
            for p in t.partitions:
                with lock:
                    offset = 0 if p.timestamp == -2 else next_offset()
                T = resp.ListOffsetsTopicResponse
                parts.append(T.ListOffsetsPartitionResponse(
                    partition_index=p.partition_index, error_code=0, timestamp=-1, offset=offset, leader_epoch=0))
            topics.append(resp.ListOffsetsTopicResponse(name=t.name, partitions=parts))
        return resp[version](throttle_time_ms=0, topics=topics)
    if api == 0:
        out = []
        T = resp.TopicProduceResponse
        for t in req.topic_data:
            parts = []
            name = topic_of(t)
            for p in t.partition_data:
                if name != TOPIC or b"reject" in p.records:
                    # An unknown topic, or a batch this broker refuses (INVALID_RECORD).
                    code = 3 if name != TOPIC else 87
                    parts.append(T.PartitionProduceResponse(index=p.index, error_code=code, base_offset=-1))
                    continue
                with lock:
                    base = next_offset()
                    batch = bytearray(p.records)
                    batch[0:8] = struct.pack(">q", base)
                    log.append((base, bytes(batch)))
                parts.append(T.PartitionProduceResponse(
                    index=p.index, error_code=0, base_offset=base, log_append_time_ms=-1, log_start_offset=0))
            out.append(T(name=t.name, topic_id=getattr(t, "topic_id", None), partition_responses=parts))
        return resp[version](responses=out, throttle_time_ms=0)
    if api == 1:
        with lock:
            waiting = not any(base >= p.fetch_offset for t in req.topics for p in t.partitions for base, _ in log)
        if waiting:
            # Nothing new: a broker holds a fetch up to its max_wait_ms.
            time.sleep(min(req.max_wait_ms, 500) / 1000)
        out = []
        for t in req.topics:
            parts = []
            for p in t.partitions:
                with lock:
                    high = next_offset()
                    records = b"".join(b for base, b in log if base >= p.fetch_offset)
                T = resp.FetchableTopicResponse
                parts.append(T.PartitionData(
                    partition_index=p.partition, error_code=0, high_watermark=high, last_stable_offset=high,
                    log_start_offset=0, aborted_transactions=[], preferred_read_replica=-1, records=records))
            out.append(resp.FetchableTopicResponse(
                topic=getattr(t, "topic", None), topic_id=getattr(t, "topic_id", None), partitions=parts))
        return resp[version](throttle_time_ms=0, error_code=0, session_id=0, responses=out)
    raise ValueError(f"api {api}")


def serve(conn, port):
    with conn:
        buf = b""
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            while len(buf) >= 4:
                (size,) = struct.unpack(">i", buf[:4])
                if len(buf) < 4 + size:
                    break
                frame, buf = buf[4:4 + size], buf[4 + size:]
                api, version = struct.unpack(">hh", frame[:4])
                req_class = APIS[api][0][version]
                data = BytesIO(frame)
                header = req_class.parse_header(data)
                req = req_class.decode(data)
                resp = respond(api, version, req, port)
                if api == 0 and req.acks == 0:
                    continue
                resp.with_header(correlation_id=header.correlation_id)
                conn.sendall(resp.encode(framed=True, header=True))


def main():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    port = s.getsockname()[1]
    print(port, flush=True)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=serve, args=(conn, port), daemon=True).start()


main()
