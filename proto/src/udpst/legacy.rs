//! The layouts of protocol versions 11 to 19 (OB-UDPST before 9), which an OB-UDPST
//! 9 server still accepts and an older server is the only one to speak. The Setup,
//! Null and Load PDUs are unchanged. The Test Activation PDU ends after the
//! sending-rate row (60 bytes: the sub-interval in whole seconds in `reserved1`, a
//! checksum at byte 58); the Status PDU pads its sub-interval statistics after
//! `rx_datagrams` and after `accum_ms`, and ends with its send time (168 bytes, a
//! checksum where version 20 has `reserved2`). Neither authenticates, and neither
//! carries ECN counts. Decoding realigns them into the current structs, as OB-UDPST's
//! own server does (`align_statuspdu`); `Activation::encode_for` and
//! `Status::encode_for` write them back. Bytes only: the PDUs are the parent's.

/// The first protocol version of the current layouts (and of authentication, ECN and
/// millisecond sub-intervals).
pub const CURRENT_LAYOUT: u16 = 20;
/// Length of a Test Activation PDU of versions 11 to 19.
pub const LEGACY_ACTIVATION_LEN: usize = 60;
/// Length of a Status Feedback PDU of versions 11 to 19.
pub const LEGACY_STATUS_LEN: usize = 168;
/// Bytes of the activation both layouts share: up to the end of the sending-rate row.
pub const ACTIVATION_SHARED: usize = 56;
/// Where a legacy activation keeps its checksum.
pub const ACTIVATION_CHECKSUM_AT: usize = 58;
/// Where a legacy status keeps its checksum (`reserved2` in version 20).
pub const STATUS_CHECKSUM_AT: usize = 146;

/// Where the legacy status's blocks sit in the current one: `(legacy, current, len)`.
/// Between them, the legacy layout pads 4 bytes after `rx_datagrams` and after
/// `accum_ms`; it ends with the send time, where version 20 goes on with its tail.
const STATUS_BLOCKS: [(usize, usize, usize); 3] = [(0, 0, 44), (48, 44, 52), (104, 96, 64)];

/// Copies a legacy status's fields (`legacy`, [`LEGACY_STATUS_LEN`] bytes) to their
/// places in `current` (the version-20 layout); the tail is left as it was.
pub fn status_to_current(legacy: &[u8], current: &mut [u8]) {
    for (from, to, len) in STATUS_BLOCKS {
        current[to..to + len].copy_from_slice(&legacy[from..from + len]);
    }
}

/// A version-20 status's bytes (`current`) in the legacy layout, padding zeroed.
pub fn status_from_current(current: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; LEGACY_STATUS_LEN];
    for (to, from, len) in STATUS_BLOCKS {
        out[to..to + len].copy_from_slice(&current[from..from + len]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    fn status() -> Status {
        Status {
            action: TestAction::Test,
            rx_stopped: false,
            seq: 7,
            rate: SendingRate {
                tx_interval1_us: 100,
                udp_payload1: 1222,
                burst_size1: 3,
                ..SendingRate::default()
            },
            sub_interval_seq: 2,
            sub_interval: SubInterval {
                rx_datagrams: 0x0102_0304,
                rx_bytes: 0x0a0b_0c0d_0e0f_1011,
                delta_us: 1_000_123,
                loss: 5,
                accum_ms: 0x2122_2324,
                ..SubInterval::default()
            },
            loss: 0x3132_3334,
            ooo: 1,
            dup: 2,
            clock_delta_min: 3,
            delay_var_min: 4,
            delay_var_max: 5,
            delay_var_sum: 6,
            delay_var_count: 7,
            rtt_min: 20,
            rtt_var_sample: 2,
            delay_min_updated: 1,
            reserved1: 0,
            reserved2: 0,
            trial_us: 50_000,
            trial_datagrams: 600,
            trial_bytes: 733_200,
            sent: (0x4142_4344, 0x5152_5354),
            tail: [0; 44],
        }
    }

    #[test]
    fn a_legacy_status_puts_each_field_where_ob_udpst_8_reads_it() {
        let s = status();
        let b = s.encode_for(11);
        assert_eq!(b.len(), LEGACY_STATUS_LEN);
        // rx_datagrams ends the shared head; 4 bytes of padding; rx_bytes.
        assert_eq!(&b[40..44], &[1, 2, 3, 4]);
        assert_eq!(&b[44..48], &[0; 4]);
        assert_eq!(&b[48..56], &0x0a0b_0c0d_0e0f_1011u64.to_be_bytes());
        // accum_ms, 4 bytes of padding, then the trial's loss.
        assert_eq!(&b[96..100], &[0x21, 0x22, 0x23, 0x24]);
        assert_eq!(&b[100..104], &[0; 4]);
        assert_eq!(&b[104..108], &[0x31, 0x32, 0x33, 0x34]);
        // The send time closes it; the checksum (146) is unused.
        assert_eq!(
            &b[160..168],
            &[0x41, 0x42, 0x43, 0x44, 0x51, 0x52, 0x53, 0x54]
        );
        assert_eq!(&b[146..148], &[0, 0]);
        assert_eq!(Pdu::decode(&b), Ok(Pdu::Status(s)));
        assert_eq!(s.encode_for(20), s.encode());
    }

    proptest::proptest! {
        /// Any legacy activation or status that decodes writes back the same fields:
        /// every byte but the padding, the activation's 2 bytes after the rate row and
        /// its checksum, which the current structs do not keep.
        #[test]
        fn legacy_pdus_write_back_what_they_read(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), LEGACY_STATUS_LEN),
        ) {
            let mut status = body.clone();
            status[..2].copy_from_slice(&STATUS_ID.to_be_bytes());
            status[2] = 0; // test action
            status[3] = 0; // rx stopped
            status[STATUS_CHECKSUM_AT..STATUS_CHECKSUM_AT + 2].copy_from_slice(&[0, 0]);
            if let Ok(Pdu::Status(s)) = Pdu::decode(&status) {
                let mut again = s.encode_for(11);
                for at in [44, 45, 46, 47, 100, 101, 102, 103] {
                    again[at] = status[at];
                }
                proptest::prop_assert_eq!(again, status);
            } else {
                proptest::prop_assert!(false, "a status with a valid head decodes");
            }
            let mut act = body[..LEGACY_ACTIVATION_LEN].to_vec();
            act[..2].copy_from_slice(&ACTIVATION_ID.to_be_bytes());
            act[ACTIVATION_CHECKSUM_AT..].copy_from_slice(&[0, 0]);
            let Ok(Pdu::Activation(a)) = Pdu::decode(&act) else {
                return Err(proptest::test_runner::TestCaseError::fail("an activation decodes"));
            };
            let again = a.encode_for(11);
            proptest::prop_assert_eq!(&again[..ACTIVATION_SHARED], &act[..ACTIVATION_SHARED]);
        }
    }

    #[test]
    fn a_legacy_activation_carries_the_sub_interval_in_seconds() {
        let a = Activation {
            version: 11,
            request: ACTIVATE_DOWNSTREAM,
            response: 0,
            low_thresh_ms: 30,
            upper_thresh_ms: 90,
            trial_ms: 50,
            test_s: 10,
            reserved1: 0,
            dscp_ecn: 0,
            sr_index: SR_INDEX_AUTO,
            use_one_way_delay: 0,
            high_speed_delta: 10,
            slow_adjust_thresh: 3,
            seq_err_thresh: 10,
            ignore_ooo_dup: 1,
            modifiers: 0,
            rate_algo: 0,
            ecn_ce_thresh: 0,
            rate: SendingRate::default(),
            sub_interval_ms: 1000,
            reserved3: 0,
            rate_adjust_suppress: 0,
            reserved5: 0,
            auth: Auth::default(),
        };
        let b = a.encode_for(11);
        assert_eq!(b.len(), LEGACY_ACTIVATION_LEN);
        assert_eq!(b[14], 1, "reserved1: the sub-interval in seconds");
        assert_eq!(&b[12..14], &10u16.to_be_bytes(), "test duration");
        let Ok(Pdu::Activation(back)) = Pdu::decode(&b) else {
            panic!("a legacy activation decodes");
        };
        assert_eq!(back, Activation { reserved1: 1, ..a });
        // A checksum that does not verify is refused, as OB-UDPST refuses it.
        let mut bad = b.clone();
        bad[58] = 0x12;
        assert!(Pdu::decode(&bad).is_err());
    }
}
