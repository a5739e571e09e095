//! Property tests: every record survives JSON encoding unchanged; readers tolerate
//! unknown fields and enum values; decoders never panic on arbitrary bytes.

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use sonde_proto::echo::{EchoPacket, Kind};
use sonde_proto::wire::{
    self, EnrolToken, Enroll, Enrolled, FrameDecoder, Health, Message, RawRecord, Upload,
};
use sonde_proto::*;

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..4_000_000_000, 0u32..1_000_000_000)
        .prop_map(|(s, ns)| Utc.timestamp_opt(s, ns).single().unwrap_or_default())
}

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![0.0..1e12f64, -1e3..1e3f64, Just(0.0)]
}

fn opt_string() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[ -~éà]{0,16}")
}

fn latency() -> BoxedStrategy<LatencyStats> {
    (
        0u32..10_000,
        0u32..10_000,
        finite(),
        proptest::option::of(finite()),
        proptest::option::of(finite()),
        proptest::option::of(finite()),
        proptest::option::of(finite()),
        finite(),
    )
        .prop_map(
            |(sent, received, loss, med, p90, min, jit, to)| LatencyStats {
                sent,
                received,
                loss_ratio: loss,
                median_s: med,
                p90_s: p90,
                min_s: min,
                jitter_s: jit,
                loss_timeout_s: to,
            },
        )
        .boxed()
}

fn throughput() -> BoxedStrategy<Throughput> {
    (
        prop_oneof![Just(Direction::Down), Just(Direction::Up)],
        prop_oneof![Just(MeasuredAt::Agent), Just(MeasuredAt::Responder)],
        (
            0u32..64,
            finite(),
            finite(),
            finite(),
            proptest::option::of(0u32..70_000),
        ),
        (any::<u64>(), any::<u64>(), finite(), finite(), finite()),
        (0u32..1000, 0u32..1000, finite(), finite(), finite()),
        prop_oneof![
            Just(StopReason::Stable),
            Just(StopReason::MaxDuration),
            Just(StopReason::Error)
        ],
        proptest::option::of(any::<u64>()),
        proptest::option::of(latency()),
        proptest::option::of(series()),
    )
        .prop_map(
            |(direction, at, a, b, c, stop, retrans, loaded, series)| Throughput {
                direction,
                measured_at: at,
                counting: if a.0 % 2 == 0 {
                    Some(Counting::TcpSegments)
                } else {
                    None
                },
                streams: a.0,
                goodput_bps: a.1,
                ip_rate_bps: a.2,
                ip_overhead_ratio: a.3,
                mss_bytes: a.4,
                bytes_total: b.0,
                bytes_measured: b.1,
                duration_s: b.2,
                measured_duration_s: b.3,
                warmup_trimmed_s: b.4,
                samples: SampleSummary {
                    interval_s: 0.1,
                    count: c.0,
                    used: c.1,
                    p10_bps: c.2,
                    p50_bps: c.3,
                    p90_bps: c.4,
                },
                stop_reason: stop,
                retransmits: retrans,
                loaded_latency: loaded,
                series,
            },
        )
        .boxed()
}

fn series() -> impl Strategy<Value = Series> {
    (
        proptest::collection::vec(any::<u64>(), 0..20),
        proptest::collection::vec(proptest::collection::vec(any::<u64>(), 0..5), 0..3),
        proptest::collection::vec((finite(), finite()), 0..5),
        proptest::collection::vec(finite(), 0..3),
    )
        .prop_map(|(rates, streams, rtt, lost)| Series {
            interval_s: 0.1,
            rates_bps: rates,
            stream_rates_bps: streams,
            rtt_s: rtt.into_iter().map(|(a, b)| [a, b]).collect(),
            lost_at_s: lost,
        })
}

fn outcome() -> impl Strategy<Value = VerdictOutcome> {
    prop_oneof![
        Just(VerdictOutcome::Met),
        Just(VerdictOutcome::NotMet),
        Just(VerdictOutcome::PortLimited),
        Just(VerdictOutcome::NoTarget),
        Just(VerdictOutcome::Inconclusive)
    ]
}

prop_compose! {
    fn record()(
        id in any::<u128>(),
        agent_id in opt_string(),
        site in (opt_string(), opt_string(), proptest::option::of(-90.0..90.0f64), proptest::option::of(-180.0..180.0f64)),
        kind in prop_oneof![Just(AccessKind::Ftth), Just(AccessKind::FourG), Just(AccessKind::Wifi), Just(AccessKind::Other)],
        access in (opt_string(), opt_string(), proptest::option::of(any::<u64>()), proptest::option::of(any::<u32>())),
        times in (time(), time()),
        run in ("[a-z:/0-9.]{1,30}", opt_string(), opt_string(), 1u32..64, finite()),
        download in proptest::option::of(throughput()),
        upload in proptest::option::of(throughput()),
        idle in proptest::option::of(latency()),
        flags in proptest::collection::vec(prop_oneof![Just(Flag::NicLimited), Just(Flag::Unstable), Just(Flag::CrossTraffic)], 0..3),
        verdict in (proptest::option::of(finite()), proptest::option::of(finite()), finite(), outcome(), outcome()),
        status in (prop_oneof![Just(Outcome::Ok), Just(Outcome::Partial), Just(Outcome::Failed)],
                   proptest::option::of(prop_oneof![Just(FailureReason::Dns), Just(FailureReason::Timeout), Just(FailureReason::Busy)]),
                   opt_string()),
    ) -> ResultRecord {
        ResultRecord {
            schema_version: SCHEMA_VERSION,
            id: uuid::Uuid::from_u128(id),
            agent: AgentInfo { id: agent_id, version: "0.1.0".into() },
            site: Site { quartier: site.0, building: site.1, latitude: site.2, longitude: site.3 },
            access: Access { name: access.0, kind, interface: access.1, link_speed_bps: access.2, mtu: access.3 },
            run: Run {
                started_at: times.0,
                ended_at: times.1,
                engine: Engine::SondeHttp,
                responder: ResponderRef { url: run.0, version: run.1, address: run.2 },
                directions: vec![Direction::Down, Direction::Up],
                streams: run.3,
                max_duration_s: run.4,
                interval_s: None,
                cross_traffic_bytes: None,
                cpu_busy_ratio: None,
                clock_synchronised: None,
            },
            download,
            upload,
            idle_latency: idle,
            radio: None,
            capacity: None,
            responsiveness: None,
            flags,
            verdict: Verdict { target_down_bps: verdict.0, target_up_bps: verdict.1, tolerance: verdict.2, down: verdict.3, up: verdict.4 },
            status: Status { outcome: status.0, reason: status.1, message: status.2 },
            methodology_version: METHODOLOGY_VERSION.into(),
        }
    }
}

proptest! {
    #[test]
    fn records_round_trip_through_json(r in record()) {
        let json = r.to_json();
        let back = ResultRecord::from_json(json.as_bytes()).expect("own output parses");
        prop_assert_eq!(back, r);
    }

    #[test]
    fn readers_ignore_unknown_fields_and_values(r in record(), extra in "[a-z]{1,8}") {
        let mut value = serde_json::to_value(&r).expect("encodes");
        let obj = value.as_object_mut().expect("an object");
        obj.insert(format!("zz_{extra}"), serde_json::json!({"added": "in v1.1"}));
        obj.get_mut("access").and_then(|a| a.as_object_mut())
            .expect("access object")
            .insert("kind".into(), serde_json::json!("5g"));
        obj.insert("flags".into(), serde_json::json!(["nic_limited", "solar_flare"]));
        let back = ResultRecord::from_json(value.to_string().as_bytes()).expect("tolerant reader");
        prop_assert_eq!(back.access.kind, AccessKind::Unknown);
        prop_assert_eq!(back.flags, vec![Flag::NicLimited, Flag::Unknown]);
        prop_assert_eq!(back.id, r.id);
    }

    #[test]
    fn record_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = ResultRecord::from_json(&bytes);
    }

    #[test]
    fn echo_round_trips(session in any::<u32>(), seq in any::<u32>(), t in any::<u64>(), pad in 0usize..1400) {
        let p = EchoPacket { kind: Kind::Request, session, seq, client_send_ns: t, server_recv_ns: 0 };
        let mut buf = vec![0u8; echo::HEADER_LEN + pad];
        p.encode(&mut buf).expect("room");
        prop_assert_eq!(EchoPacket::decode(&buf), Ok(p));
    }

    #[test]
    fn echo_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
        let _ = EchoPacket::decode(&bytes);
    }
}

/// `msg` encoded, then decoded from pieces of `chunk` bytes: the last message out.
fn through_frames(msg: &Message, chunk: usize) -> Option<Message> {
    let bytes = wire::encode(msg);
    let mut d = FrameDecoder::new(wire::DEFAULT_MAX_PAYLOAD);
    let mut got = None;
    for part in bytes.chunks(chunk) {
        d.push(part);
        if let Some(m) = d.poll().expect("valid frame") {
            got = Some(m);
        }
    }
    got
}

proptest! {
    #[test]
    fn uploads_round_trip_through_frames(records in proptest::collection::vec(record(), 0..4), batch in any::<u64>(), chunk in 1usize..64) {
        let msg = Message::Upload(Upload {
            batch,
            health: Health { spool_depth: records.len() as u64, version: "0.1.0".into(), ..Health::default() },
            results: records.iter().map(RawRecord::of).collect(),
            signatures: None,
        });
        let got = through_frames(&msg, chunk);
        prop_assert_eq!(&got, &Some(msg));
        if let Some(Message::Upload(u)) = got {
            let parsed: Vec<ResultRecord> = u.results.iter().map(|r| r.parse().expect("a record")).collect();
            prop_assert_eq!(parsed, records);
        }
    }

    #[test]
    fn enrolment_messages_round_trip(token in "[ -~]{0,80}", csr in "[ -~\n]{0,300}", id in "[a-z0-9-]{1,20}", chunk in 1usize..64) {
        for msg in [
            Message::Enroll(Enroll { token: token.clone(), csr_pem: csr.clone() }),
            Message::Enrolled(Enrolled { agent_id: id.clone(), cert_pem: csr.clone(), ca_pem: token.clone(), quartier: "q".into(), building: id.clone() }),
        ] {
            prop_assert_eq!(through_frames(&msg, chunk), Some(msg));
        }
    }

    #[test]
    fn plans_round_trip_through_frames(version in 1u64..1000, name in "[a-z]{1,12}", every_min in 1u32..600, chunk in 1usize..64) {
        let file: sonde_proto::plan::PlanFile = serde_json::from_value(serde_json::json!({
            "group": [{
                "quartier": "q",
                "access": [{
                    "name": name,
                    "kind": "ftth",
                    "interface": "eth0",
                    "responders": ["http://r.example"],
                    "every": format!("{every_min}m"),
                }],
            }],
        })).expect("plan");
        let at = chrono::DateTime::from_timestamp(1_790_000_000, 0).expect("time");
        let plan = file.for_site(version, at, "q", "b").expect("the quartier's group");
        let msg = Message::Plan(plan);
        prop_assert_eq!(through_frames(&msg, chunk), Some(msg));
    }

    #[test]
    fn token_parser_never_panics(text in "\\PC{0,100}") {
        let _ = text.parse::<EnrolToken>();
    }

    #[test]
    fn frame_decoder_never_panics_and_stays_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..2048), max in 0usize..512) {
        let mut d = FrameDecoder::new(max);
        for part in bytes.chunks(100) {
            d.push(part);
            let _ = d.poll();
            prop_assert!(d.buffered() <= wire::HEADER_LEN + max + 100);
        }
    }
}

#[test]
fn rejects_other_schema_versions_and_oversize_input() {
    let json = r#"{"schema_version": 2, "id": "whatever"}"#;
    assert!(matches!(
        ResultRecord::from_json(json.as_bytes()),
        Err(DecodeError::Version(2))
    ));
    let big = vec![b' '; MAX_RECORD_BYTES + 1];
    assert!(matches!(
        ResultRecord::from_json(&big),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn the_schema_document_example_is_a_valid_record() {
    let record = ResultRecord::schema_example();
    assert_eq!(record.schema_version, SCHEMA_VERSION);
    assert!(record.download.is_some() && record.upload.is_some());
}
