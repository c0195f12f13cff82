//! IPVS's TCP connection states, their timeouts and transition tables
//! (kernel `ip_vs_proto_tcp.c`, modern tables; spec §5). UDP has the single state `STATE_UDP`.

pub const STATE_NONE: u8 = 0;
pub const STATE_ESTABLISHED: u8 = 1;
pub const STATE_SYN_SENT: u8 = 2;
pub const STATE_SYN_RECV: u8 = 3;
pub const STATE_FIN_WAIT: u8 = 4;
pub const STATE_TIME_WAIT: u8 = 5;
pub const STATE_CLOSE: u8 = 6;
pub const STATE_CLOSE_WAIT: u8 = 7;
pub const STATE_LAST_ACK: u8 = 8;
pub const STATE_LISTEN: u8 = 9;
pub const STATE_SYNACK: u8 = 10;
/// UDP's one state (`-Lc` shows `UDP`).
pub const STATE_UDP: u8 = 11;
pub const NUM_STATES: usize = 12;

/// Names as `ipvsadm -Lc` prints them.
pub const STATE_NAMES: [&str; NUM_STATES] = [
    "NONE",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "SYNACK",
    "UDP",
];

/// Default timeouts in seconds (`tcp_timeouts[]`, `udp_timeouts[]`).
pub const DEFAULT_TIMEOUTS: [u32; NUM_STATES] = [2, 900, 120, 60, 120, 120, 10, 60, 30, 120, 120, 300];

/// Timeout of a connection just created, before its first transition (IPVS: 3 s, INACTIVE).
pub const NEW_CONN_TIMEOUT: u32 = 3;

/// States counted in ActiveConn (modern `tcp_state_active_table`); all others are InActConn.
#[inline(always)]
pub const fn is_active(state: u8) -> bool {
    matches!(state, STATE_ESTABLISHED | STATE_SYN_SENT | STATE_SYN_RECV | STATE_SYNACK)
}

/// Direction of a packet relative to its connection.
pub const DIR_INPUT: usize = 0;
pub const DIR_OUTPUT: usize = 1;
/// Input packet of a connection that has seen no output (DR/TUN: `IP_VS_CONN_F_NOOUTPUT`).
pub const DIR_INPUT_ONLY: usize = 2;

const ES: u8 = STATE_ESTABLISHED;
const SS: u8 = STATE_SYN_SENT;
const SR: u8 = STATE_SYN_RECV;
const FW: u8 = STATE_FIN_WAIT;
const TW: u8 = STATE_TIME_WAIT;
const CL: u8 = STATE_CLOSE;
const CW: u8 = STATE_CLOSE_WAIT;
const LA: u8 = STATE_LAST_ACK;
const LI: u8 = STATE_LISTEN;

/// `TABLE[dir][flag][state]`, flag index: 0 syn, 1 fin, 2 ack, 3 rst.
const TABLE: [[[u8; 11]; 4]; 3] = [
    // INPUT
    [
        [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
        [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
    ],
    // OUTPUT
    [
        [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
        [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
        [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
        [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
    ],
    // INPUT-ONLY
    [
        [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
        [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ],
];

pub const TCP_FLAG_FIN: u8 = 0x01;
pub const TCP_FLAG_SYN: u8 = 0x02;
pub const TCP_FLAG_RST: u8 = 0x04;
pub const TCP_FLAG_ACK: u8 = 0x10;

/// Next TCP state for a packet with TCP `flags` (the flags byte of the header) seen in `dir`.
/// RST has priority, then SYN, FIN, ACK; a packet with none of them moves the conn to CLOSE.
#[inline(always)]
pub fn next_tcp_state(state: u8, dir: usize, flags: u8) -> u8 {
    let idx = if flags & TCP_FLAG_RST != 0 {
        3
    } else if flags & TCP_FLAG_SYN != 0 {
        0
    } else if flags & TCP_FLAG_FIN != 0 {
        1
    } else if flags & TCP_FLAG_ACK != 0 {
        2
    } else {
        return STATE_CLOSE;
    };
    let s = state as usize;
    if dir >= 3 || s >= 11 {
        return STATE_CLOSE;
    }
    TABLE[dir][idx][s]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dr_flow() {
        // Typical DR flow (input only): SYN -> SYN_RECV, ACK -> ESTABLISHED, FIN -> FIN_WAIT.
        let s = next_tcp_state(STATE_NONE, DIR_INPUT_ONLY, TCP_FLAG_SYN);
        assert_eq!(s, STATE_SYN_RECV);
        let s = next_tcp_state(s, DIR_INPUT_ONLY, TCP_FLAG_ACK);
        assert_eq!(s, STATE_ESTABLISHED);
        let s = next_tcp_state(s, DIR_INPUT_ONLY, TCP_FLAG_FIN | TCP_FLAG_ACK);
        assert_eq!(s, STATE_FIN_WAIT);
        assert!(!is_active(s));
    }

    #[test]
    fn nat_flow_client_closes() {
        let s = next_tcp_state(STATE_ESTABLISHED, DIR_INPUT, TCP_FLAG_FIN | TCP_FLAG_ACK);
        assert_eq!(s, STATE_CLOSE_WAIT);
        let s = next_tcp_state(s, DIR_OUTPUT, TCP_FLAG_FIN | TCP_FLAG_ACK);
        assert_eq!(s, STATE_TIME_WAIT);
    }

    #[test]
    fn no_flags_closes() {
        assert_eq!(next_tcp_state(STATE_ESTABLISHED, DIR_INPUT, 0), STATE_CLOSE);
    }
}
