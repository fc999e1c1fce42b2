//! SFU forwarding capacity: rooms x participants, every participant sending one 50
//! packets/s Opus-sized stream over real UDP on 127.0.0.1 (ICE, DTLS, SRTP), receiving
//! everyone else's. Reports forwarded streams, packets delivered to the receivers, the SFU
//! thread's CPU, streams per core (delivered packets/s / 50 per core of SFU CPU) and loss
//! (1 - frames received / (frames sent x (participants - 1)), counted at the receivers after
//! a 300 ms drain), as the median of several runs per shape, with each run on stderr.
//!
//! `cargo bench -p voice --bench forwarding` (optionally `-- ROOMSxPARTICIPANTS ...`,
//! `CHORUS_BENCH_SECS`, `CHORUS_BENCH_RUNS`). The SFU runs on one thread (a current-thread
//! runtime) so its CPU is that thread's; the client peers run on another.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use voice::client::{ClientPeer, Swarm};
use voice::server::{VoiceConfig, VoiceHandle};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// CPU seconds (user + system) of the calling thread.
fn thread_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self/stat");
    // Fields after the command name (which is in parentheses).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// CPU seconds of the whole process.
fn process_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

struct Run {
    streams: usize,
    sfu_cpu: f64,
    client_cpu: f64,
    loss: f64,
    delivered_pps: f64,
    udp_errors: u64,
}

fn run(rooms: usize, participants: usize, secs: u64) -> Run {
    // The SFU on its own thread.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let handle = rt.handle().clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_thread = std::thread::spawn(move || {
        rt.block_on(async {
            let _ = stop_rx.await;
        })
    });
    // Start the server from inside the SFU thread's runtime, so its task runs there.
    let voice = {
        let (tx, rx) = std::sync::mpsc::channel();
        handle.spawn(async move {
            let v = VoiceHandle::start(VoiceConfig::new((LOCALHOST, 0).into())).await;
            let _ = tx.send(v);
        });
        rx.recv().unwrap().expect("voice server")
    };
    // The SFU thread's CPU time and the instant it was read, both on the SFU thread (the
    // read may wait behind a busy SFU, so the instant is taken there, not here).
    let cpu_on_server = |h: &tokio::runtime::Handle| {
        let (tx, rx) = std::sync::mpsc::channel();
        h.spawn(async move {
            let _ = tx.send((thread_cpu(), Instant::now()));
        });
        rx.recv().unwrap()
    };

    let mut peers = Vec::new();
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for r in 0..rooms {
        for p in 0..participants {
            let user = (r * 1000 + p + 1) as u64;
            let (mut peer, offer) = ClientPeer::new(user, LOCALHOST, participants - 1).unwrap();
            let answer = client_rt
                .block_on(voice.join(r as u64 + 1, user, offer))
                .unwrap()
                .unwrap();
            peer.accept_answer(&answer).unwrap();
            peers.push(peer);
        }
    }
    let swarm = Swarm::start_with_tick(peers, Duration::from_millis(4));
    let ready = swarm.wait_until(Duration::from_secs(60), |peers| {
        peers.iter().all(|p| p.heard().len() == participants - 1)
    });
    if !ready {
        let peers = swarm.peers();
        let state: Vec<_> = peers
            .iter()
            .filter(|p| p.heard().len() != participants - 1)
            .map(|p| (p.user, p.connected, p.failed, p.sent, p.heard()))
            .collect();
        let sfu: Vec<_> = state
            .iter()
            .map(|(user, ..)| {
                let room = client_rt.block_on(voice.inspect(*user / 1000 + 1)).unwrap();
                room.into_iter()
                    .find(|p| p.user == *user)
                    .map(|p| (p.user, p.connected, p.consumers))
            })
            .collect();
        panic!("not every peer hears every other peer: {state:?}; the SFU's view: {sfu:?}");
    }
    std::thread::sleep(Duration::from_millis(500));

    // Frames sent and received by all peers, and when (under the swarm's lock).
    let snapshot = |swarm: &Swarm| -> (u64, u64, Instant) {
        let peers = swarm.peers();
        let sent: u64 = peers.iter().map(|p| p.sent).sum();
        let received: u64 = peers
            .iter()
            .map(|p| p.received.values().map(|r| r.frames).sum::<u64>())
            .sum();
        (sent, received, Instant::now())
    };
    let (sfu0, sfu_t0) = cpu_on_server(&handle);
    let (proc0, proc_t0) = (process_cpu(), Instant::now());
    let udp0 = udp_errors();
    let (sent0, recv0, t0) = snapshot(&swarm);
    std::thread::sleep(Duration::from_secs(secs));
    let (_, recv1, t1) = snapshot(&swarm);
    let (sfu1, sfu_t1) = cpu_on_server(&handle);
    let (proc1, proc_t1) = (process_cpu(), Instant::now());
    // Stop sending, let what is in flight arrive.
    for p in swarm.peers().iter_mut() {
        p.sending = false;
    }
    std::thread::sleep(Duration::from_millis(300));
    let (sent2, recv2, _) = snapshot(&swarm);
    let udp1 = udp_errors();
    if std::env::var("CHORUS_BENCH_DEBUG").is_ok() {
        let mut produced = 0;
        let mut forwarded = 0;
        for r in 0..rooms {
            for p in client_rt.block_on(voice.inspect(r as u64 + 1)).unwrap() {
                produced += p.produced;
                forwarded += p.consumers.iter().map(|c| c.2).sum::<u64>();
            }
        }
        let sent: u64 = swarm.peers().iter().map(|p| p.sent).sum();
        let recv: u64 = swarm
            .peers()
            .iter()
            .map(|p| p.received.values().map(|r| r.frames).sum::<u64>())
            .sum();
        let late: u64 = swarm
            .peers()
            .iter()
            .map(|p| p.received.values().map(|r| r.late).sum::<u64>())
            .sum();
        eprintln!("debug: sent {sent}, produced at SFU {produced}, forwarded {forwarded}, received {recv}, late {late}");
    }
    let expected = (sent2 - sent0) * (participants as u64 - 1);
    let received = recv2 - recv0;
    let loss = 1.0 - received as f64 / expected as f64;
    let sfu_secs = (sfu_t1 - sfu_t0).as_secs_f64();
    let sfu_cpu = (sfu1 - sfu0) / sfu_secs;
    let client_cpu = (proc1 - proc0) / (proc_t1 - proc_t0).as_secs_f64() - sfu_cpu;
    drop(swarm);
    let _ = stop_tx.send(());
    let _ = server_thread.join();
    Run {
        streams: rooms * participants * (participants - 1),
        sfu_cpu,
        client_cpu,
        loss: loss.max(0.0),
        delivered_pps: (recv1 - recv0) as f64 / (t1 - t0).as_secs_f64(),
        udp_errors: udp1 - udp0,
    }
}

/// The kernel's UDP receive errors so far (all sockets: `InErrors` of `/proc/net/snmp`,
/// which includes receive-buffer overflows).
fn udp_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").expect("/proc/net/snmp");
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (
        lines.next().expect("Udp header"),
        lines.next().expect("Udp"),
    );
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "InErrors")
        .and_then(|(_, v)| v.parse().ok())
        .expect("InErrors")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        // Built and run by `cargo test --all-targets`: nothing to measure.
        return;
    }
    let shapes: Vec<(usize, usize)> = {
        let given: Vec<(usize, usize)> = args
            .iter()
            .filter_map(|a| a.split_once('x'))
            .filter_map(|(r, p)| Some((r.parse().ok()?, p.parse().ok()?)))
            .collect();
        if given.is_empty() {
            vec![(10, 5), (1, 20), (3, 20), (5, 15), (12, 10), (5, 20)]
        } else {
            given
        }
    };
    let secs: u64 = std::env::var("CHORUS_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let runs: usize = std::env::var("CHORUS_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    println!("voice forwarding: {secs} s per run, median of {runs} runs, 50 packets/s per stream, 60-byte frames");
    println!(
        "{:>14} {:>9} {:>14} {:>9} {:>12} {:>11} {:>8} {:>10} {:>10} {:>14}",
        "rooms x users",
        "streams",
        "delivered pkt/s",
        "SFU CPU",
        "streams/core",
        "client CPU",
        "loss",
        "worst loss",
        "UDP errors",
        "load before"
    );
    for (rooms, participants) in shapes {
        let load = loadavg();
        let results: Vec<Run> = (0..runs)
            .map(|i| {
                let r = run(rooms, participants, secs);
                eprintln!(
                    "  run {i}: {rooms} x {participants}: SFU CPU {:.1}%, client CPU {:.1}%, loss {:.2}%, delivered {:.0} pkt/s, UDP errors {}, load {}",
                    r.sfu_cpu * 100.0,
                    r.client_cpu * 100.0,
                    r.loss * 100.0,
                    r.delivered_pps,
                    r.udp_errors,
                    loadavg()
                );
                r
            })
            .collect();
        let streams = results[0].streams;
        let cpu = median(results.iter().map(|r| r.sfu_cpu).collect());
        let client = median(results.iter().map(|r| r.client_cpu).collect());
        let loss = median(results.iter().map(|r| r.loss).collect());
        let worst = results.iter().map(|r| r.loss).fold(0.0, f64::max);
        let pps = median(results.iter().map(|r| r.delivered_pps).collect());
        let udp: u64 = results.iter().map(|r| r.udp_errors).sum();
        // Streams actually forwarded (delivered packets/s over 50) per core of SFU CPU: when
        // the client thread falls behind and sends under 50 packets/s, the SFU is not
        // credited with the nominal count.
        let per_core = median(
            results
                .iter()
                .map(|r| r.delivered_pps / 50.0 / r.sfu_cpu.max(1e-9))
                .collect(),
        );
        println!(
            "{:>14} {:>9} {:>14.0} {:>8.1}% {:>12.0} {:>10.1}% {:>7.2}% {:>9.2}% {:>10} {:>14}",
            format!("{rooms} x {participants}"),
            streams,
            pps,
            cpu * 100.0,
            per_core,
            client * 100.0,
            loss * 100.0,
            worst * 100.0,
            udp,
            load
        );
    }
}

/// The 1, 5 and 15 minute load averages.
fn loadavg() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}
