//! bench-flood's results: one row per cell (attack, rate, state), each legitimate measure next
//! to its ratio to the same state without an attack; what the host's receive path spent per
//! flood frame and what each state kept of the ceiling; the flood rate at which each state's
//! keep-alive goodput halves; where the receiver saturates.

use std::fmt::Write as _;

use crate::{attack::Attack, cpu::Shares, legit::Goodput, State};

/// One cell of the table.
pub struct Cell {
    pub attack: Attack,
    /// The share of the generator's frames transmitted (0: no attack).
    pub fraction: f64,
    pub state: State,
    pub keepalive: Goodput,
    pub nat: Goodput,
    pub new_ok: u32,
    pub new_total: u32,
    pub connect_p50_ms: f64,
    pub connect_p99_ms: f64,
    /// Packets per second that reached the receiver's veth during the measurement (received or
    /// lost for want of room in its ring): the flood's rate plus the legitimate packets.
    pub arrived_pps: f64,
    /// Packets per second the receiver's veth took in (XDP drops included).
    pub received_pps: f64,
    /// Frames lost before any program ran (no room in the receiver's ring).
    pub lost_before: u64,
    /// The fast path's drops by reason during the cell (api-shield's state only).
    pub xdp_drops: String,
    /// The receiver NAPI's and the sender side's shares of a CPU during the cell.
    pub cpu: Shares,
    /// Flood frames the packet-socket generator sent per second (None with live frames).
    pub sent_pps: Option<f64>,
}

/// The Markdown report: the command, the full table, the halving rates.
pub fn render(command: &str, generator: &str, full_pps: f64, cells: &[Cell]) -> String {
    let mut text = format!(
        "Command: `{command}`. The generator ({generator}) at full speed: {:.2} Mpps (64-byte \
         frames).\n\n",
        full_pps / 1e6
    );
    text.push_str(
        "| attack | rate | state | keep-alive req/s | ÷ calm | p99 ms | NAT-like req/s | ÷ calm | p99 ms | new clients ok | connect p50 / p99 ms | flood sent / arrived / received kpps | lost before XDP | CPU % receiver NAPI / sender side | XDP drops and answers |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for cell in cells {
        let calm = calm(cells, cell.state);
        let _ = writeln!(
            text,
            "| {} | {} | {} | {:.0} | {:.2}x | {:.1} | {:.0} | {:.2}x | {:.1} | {}/{} | {:.1} / {:.1} | {} / {:.0} / {:.0} | {} | {:.0} / {:.0} | {} |",
            cell.attack.name(),
            rate_name(cell.fraction),
            cell.state.name(),
            cell.keepalive.rps,
            cell.keepalive.rps / calm.map_or(f64::NAN, |c| c.keepalive.rps),
            cell.keepalive.p99_ms,
            cell.nat.rps,
            cell.nat.rps / calm.map_or(f64::NAN, |c| c.nat.rps),
            cell.nat.p99_ms,
            cell.new_ok,
            cell.new_total,
            cell.connect_p50_ms,
            cell.connect_p99_ms,
            cell.sent_pps
                .map_or("-".to_owned(), |pps| format!("{:.0}", pps / 1e3)),
            cell.arrived_pps / 1e3,
            cell.received_pps / 1e3,
            cell.lost_before,
            cell.cpu.receiver * 100.0,
            cell.cpu.sender * 100.0,
            cell.xdp_drops,
        );
    }
    text.push_str(&costs(cells));
    text.push_str(
        "\nThe flood rate (packets arriving per second) at which keep-alive goodput falls to half of \
         the same state's calm figure, interpolated between the measured rates:\n\n\
         | attack | state | goodput halves at | ÷ nftables |\n|---|---|---|---|\n",
    );
    for attack in Attack::ALL.into_iter().skip(1) {
        let nft = halving_rate(cells, attack, State::Nftables);
        // The ceiling's flood never arrives: it has no rate of its own to halve at.
        for state in State::ALL.into_iter().filter(|s| *s != State::Ceiling) {
            let Some(rate) = halving_rate(cells, attack, state) else {
                continue;
            };
            let versus = match (rate, nft) {
                (Halving::At(a), Some(Halving::At(n))) => format!("{:.2}x", a / n),
                (Halving::Above(a), Some(Halving::At(n))) => format!("> {:.2}x", a / n),
                _ => "-".to_owned(),
            };
            let _ = writeln!(
                text,
                "| {} | {} | {} | {versus} |",
                attack.name(),
                state.name(),
                rate
            );
        }
    }
    text.push_str(
        "\nWhere the receiver saturates: the highest measured flood rate (packets arriving per \
         second) at which each state lost at most 1 % of the arriving frames before XDP, and the \
         lowest at which it lost more. Half the saturating rate lies at or above half the first:\n\n\
         | attack | state | at most 1 % lost up to | more lost from |\n|---|---|---|---|\n",
    );
    for attack in Attack::ALL.into_iter().skip(1) {
        for state in State::ALL.into_iter().filter(|s| *s != State::Ceiling) {
            let rates: Vec<(f64, f64)> = cells
                .iter()
                .filter(|c| c.attack == attack && c.state == state)
                .map(|c| (c.arrived_pps, c.received_pps))
                .collect();
            if rates.is_empty() {
                continue;
            }
            let (clean, lossy) = saturation(&rates);
            let kpps =
                |pps: Option<f64>| pps.map_or("-".to_owned(), |p| format!("{:.0} kpps", p / 1e3));
            let _ = writeln!(
                text,
                "| {} | {} | {} | {} |",
                attack.name(),
                state.name(),
                kpps(clean),
                kpps(lossy)
            );
        }
    }
    text
}

/// Of measured `(arrived, received)` frame rates, the highest arriving rate that lost at most
/// 1 % before XDP and the lowest that lost more.
fn saturation(rates: &[(f64, f64)]) -> (Option<f64>, Option<f64>) {
    let lossy =
        |&(arrived, received): &(f64, f64)| arrived > 0.0 && arrived - received > 0.01 * arrived;
    let clean = rates
        .iter()
        .filter(|r| !lossy(r))
        .map(|r| r.0)
        .max_by(f64::total_cmp);
    let first_lossy = rates
        .iter()
        .filter(|r| lossy(r))
        .map(|r| r.0)
        .min_by(f64::total_cmp);
    (clean, first_lossy)
}

/// What each flood cost the host and what the clients kept of the ceiling, per flood cell.
fn costs(cells: &[Cell]) -> String {
    let mut text = String::from(
        "\nThe host's receive cost per flood frame: the receiver veth's NAPI thread's CPU time (the \
         veth's copy of each frame, XDP, the stack, the kernel's SYN cookies) above the same \
         state's calm figure, divided by the frames it received above calm (it errs low where a \
         state loses legitimate traffic, whose packets cost more than a flood frame). And what \
         each state kept of the ceiling (api-shield's state with the same flood made but \
         discarded at the sender: the attacker's CPU spent on this shared machine, nothing \
         arriving). \
         \"nftables' ÷ this\": how many times this state's cost per frame nftables' is:\n\n\
         | attack | rate | state | receive µs per flood frame | nftables' ÷ this | keep-alive ÷ ceiling | NAT-like ÷ ceiling |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let same = |cell: &Cell, state: State| {
        cells.iter().find(move |c| {
            c.state == state && c.attack == cell.attack && (c.fraction - cell.fraction).abs() < 1e-9
        })
    };
    let cost =
        |cell: &Cell| calm(cells, cell.state).map_or(f64::NAN, |calm| receive_cost_us(cell, calm));
    for cell in cells
        .iter()
        .filter(|c| c.attack != Attack::None && c.state != State::Ceiling)
    {
        let per_frame = cost(cell);
        let versus_nft = same(cell, State::Nftables).map_or(f64::NAN, |nft| cost(nft) / per_frame);
        let ceiling = same(cell, State::Ceiling);
        let kept = |measure: fn(&Cell) -> f64| {
            ceiling.map_or("-".to_owned(), |c| {
                format!("{:.2}x", measure(cell) / measure(c))
            })
        };
        let _ = writeln!(
            text,
            "| {} | {} | {} | {per_frame:.2} | {versus_nft:.2}x | {} | {} |",
            cell.attack.name(),
            rate_name(cell.fraction),
            cell.state.name(),
            kept(|c| c.keepalive.rps),
            kept(|c| c.nat.rps),
        );
    }
    text
}

/// Microseconds of the receiver's NAPI thread per frame received above `calm`'s rate (frames
/// lost before XDP cost it nothing); NaN where no more were received than in calm (the ceiling).
fn receive_cost_us(cell: &Cell, calm: &Cell) -> f64 {
    let frames = cell.received_pps - calm.received_pps;
    if frames <= 0.0 || cell.state == State::Ceiling {
        return f64::NAN;
    }
    (cell.cpu.receiver - calm.cpu.receiver) / frames * 1e6
}

/// The calm cell `state`'s figures are divided by.
fn calm(cells: &[Cell], state: State) -> Option<&Cell> {
    let state = state.calm_of();
    cells
        .iter()
        .find(|c| c.state == state && c.attack == Attack::None)
}

fn rate_name(fraction: f64) -> String {
    if fraction == 0.0 {
        "-".to_owned()
    } else if fraction >= 1.0 {
        "full".to_owned()
    } else {
        format!("{fraction} of full")
    }
}

/// Where a state's goodput halves under one attack.
#[derive(Clone, Copy)]
enum Halving {
    /// At this many frames per second.
    At(f64),
    /// Not within the measured rates, the highest of which was this.
    Above(f64),
}

impl std::fmt::Display for Halving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Halving::At(pps) => write!(f, "{:.2} Mpps", pps / 1e6),
            Halving::Above(pps) => write!(f, "above {:.2} Mpps", pps / 1e6),
        }
    }
}

/// Linear interpolation between the calm point (0 packets/s, 1.0x) and the measured rates.
fn halving_rate(cells: &[Cell], attack: Attack, state: State) -> Option<Halving> {
    let calm = calm(cells, state)?.keepalive.rps;
    let mut points: Vec<(f64, f64)> = cells
        .iter()
        .filter(|c| c.attack == attack && c.state == state)
        .map(|c| (c.arrived_pps, c.keepalive.rps / calm))
        .collect();
    if points.is_empty() {
        return None;
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut previous = (0.0, 1.0);
    for &(rate, ratio) in &points {
        if ratio < 0.5 {
            let (r0, g0) = previous;
            let at = if g0 > ratio {
                r0 + (g0 - 0.5) * (rate - r0) / (g0 - ratio)
            } else {
                rate
            };
            return Some(Halving::At(at));
        }
        previous = (rate, ratio);
    }
    Some(Halving::Above(previous.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legit::Goodput;

    fn cell(attack: Attack, state: State, arrived_pps: f64, receiver: f64) -> Cell {
        let goodput = Goodput {
            rps: 1000.0,
            p99_ms: 10.0,
        };
        Cell {
            attack,
            fraction: if attack == Attack::None { 0.0 } else { 0.125 },
            state,
            keepalive: goodput,
            nat: goodput,
            new_ok: 20,
            new_total: 20,
            connect_p50_ms: 5.0,
            connect_p99_ms: 9.0,
            arrived_pps,
            received_pps: arrived_pps,
            lost_before: 0,
            xdp_drops: String::new(),
            cpu: Shares {
                receiver,
                sender: 0.2,
            },
            sent_pps: None,
        }
    }

    #[test]
    fn receive_cost_is_the_cpu_above_calm_per_frame_received_above_calm() {
        let calm = cell(Attack::None, State::NoFilter, 15e3, 0.20);
        // 100 000 more frames a second received for 0.60 more of a CPU: 6 µs each. The 20 000
        // a second lost before XDP cost the receiver nothing.
        let mut flood = cell(Attack::SynRandom, State::NoFilter, 115e3, 0.80);
        flood.arrived_pps = 135e3;
        assert!((receive_cost_us(&flood, &calm) - 6.0).abs() < 1e-9);
        // The ceiling's flood never arrives, and a cell with no more frames than calm has no
        // cost per frame to give.
        let ceiling = cell(Attack::SynRandom, State::Ceiling, 15e3, 0.20);
        assert!(receive_cost_us(&ceiling, &calm).is_nan());
        let quiet = cell(Attack::SynRandom, State::NoFilter, 14e3, 0.30);
        assert!(receive_cost_us(&quiet, &calm).is_nan());
    }

    #[test]
    fn the_ceiling_is_divided_by_api_shields_calm() {
        let cells = [
            cell(Attack::None, State::Shield, 15e3, 0.2),
            cell(Attack::None, State::NoFilter, 15e3, 0.2),
        ];
        assert_eq!(
            calm(&cells, State::Ceiling).map(|c| c.state),
            Some(State::Shield)
        );
        assert_eq!(
            calm(&cells, State::NoFilter).map(|c| c.state),
            Some(State::NoFilter)
        );
    }

    #[test]
    fn saturation_is_between_the_last_rate_without_loss_and_the_first_with_it() {
        // 100 and 160 kpps lose under 1 %, 230 kpps 3 %, 450 kpps a third.
        let rates = [
            (450e3, 300e3),
            (100e3, 99.95e3),
            (230e3, 223e3),
            (160e3, 159.5e3),
        ];
        assert_eq!(saturation(&rates), (Some(160e3), Some(230e3)));
        assert_eq!(saturation(&rates[1..2]), (Some(100e3), None));
        assert_eq!(saturation(&rates[..1]), (None, Some(450e3)));
    }
}
