//! A DNS server for the tests, on a loopback UDP port: it answers TXT
//! queries from a table, A queries for the names it is told are on
//! loopback (127.0.0.1), and NXDOMAIN for every other name.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct FakeDns {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl FakeDns {
    /// `records`: name (no trailing dot) → TXT records.
    pub fn start(records: &[(&str, &[&str])]) -> Self {
        Self::start_dropping(records, 0)
    }

    /// Like `start`, but the first `drop` queries get no answer (lost on
    /// the way, as UDP packets are).
    pub fn start_dropping(records: &[(&str, &[&str])], drop: usize) -> Self {
        Self::serve(records, &[], drop)
    }

    /// Answers A queries for each of `hosts` with 127.0.0.1 (and other
    /// queries for them with no record).
    pub fn loopback_hosts(hosts: &[&str]) -> Self {
        Self::serve(&[], hosts, 0)
    }

    fn serve(records: &[(&str, &[&str])], hosts: &[&str], drop: usize) -> Self {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        let table: HashMap<String, Vec<String>> = records
            .iter()
            .map(|(name, txts)| {
                (name.to_ascii_lowercase(), txts.iter().map(|t| t.to_string()).collect())
            })
            .collect();
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let halt = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            let mut to_drop = drop;
            while !halt.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
                if to_drop > 0 {
                    to_drop -= 1;
                    continue;
                }
                if let Some(reply) = answer(&buf[..n], &table, &hosts) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        Self { addr, stop }
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn answer(query: &[u8], table: &HashMap<String, Vec<String>>, hosts: &[String]) -> Option<Vec<u8>> {
    // The question's name, from byte 12 to its terminating zero.
    let mut labels = Vec::new();
    let mut at = 12;
    loop {
        let len = *query.get(at)? as usize;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at + 1..at + 1 + len)?).to_ascii_lowercase());
        at += 1 + len;
    }
    let question_end = at + 5; // zero byte, type, class
    let name = labels.join(".");
    let mut reply = query.get(..question_end)?.to_vec();
    reply[2] = 0x81; // response, recursion desired
    if hosts.contains(&name) {
        let is_a = query.get(at + 1..at + 3)? == [0, 1];
        reply[3] = 0x80;
        reply[6..8].copy_from_slice(&u16::from(is_a).to_be_bytes());
        reply[8..12].copy_from_slice(&[0, 0, 0, 0]);
        if is_a {
            reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
        }
        return Some(reply);
    }
    let records = table.get(&name);
    reply[3] = if records.is_some() { 0x80 } else { 0x83 }; // NOERROR or NXDOMAIN
    let count = records.map_or(0, Vec::len) as u16;
    reply[6..8].copy_from_slice(&count.to_be_bytes());
    reply[8..12].copy_from_slice(&[0, 0, 0, 0]);
    for txt in records.into_iter().flatten() {
        reply.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 1, 44]);
        // Split into 255-byte strings, as DNS does for long records.
        let mut data = Vec::new();
        for chunk in txt.as_bytes().chunks(255) {
            data.push(chunk.len() as u8);
            data.extend_from_slice(chunk);
        }
        reply.extend_from_slice(&(data.len() as u16).to_be_bytes());
        reply.extend_from_slice(&data);
    }
    Some(reply)
}
