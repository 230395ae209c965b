//! Deliverability records in DNS: SPF, the DKIM selector's key, DMARC.
//! `herald check --dns` looks them up for the sending domain and says what is
//! missing. A small DNS client (RFC 1035 over UDP with EDNS0, TCP when the
//! answer is truncated) asks the first `nameserver` of /etc/resolv.conf, or
//! `HERALD_DNS_SERVER` (host:port) when set.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const TXT: u16 = 16;
const OPT: u16 = 41;
const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("no DNS server to ask: /etc/resolv.conf names none and HERALD_DNS_SERVER is not set")]
    NoServer,
    #[error("the DNS server {server} did not answer within {}s", TIMEOUT.as_secs())]
    Timeout { server: SocketAddr },
    #[error("cannot reach the DNS server {server}: {source}")]
    Io { server: SocketAddr, source: std::io::Error },
    #[error("the DNS server {server} answered {name} with an error (rcode {rcode})")]
    Server { server: SocketAddr, name: String, rcode: u8 },
    #[error("the DNS server {server} sent an answer herald cannot read")]
    Malformed { server: SocketAddr },
}

/// The DNS server herald asks.
pub fn server() -> Result<SocketAddr, DnsError> {
    if let Ok(text) = std::env::var("HERALD_DNS_SERVER") {
        return text.parse().map_err(|_| DnsError::NoServer);
    }
    let conf = std::fs::read_to_string("/etc/resolv.conf").map_err(|_| DnsError::NoServer)?;
    conf.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .next()
        .ok_or(DnsError::NoServer)
}

/// The TXT records at `name` (each record's strings joined). An empty list
/// when the name has no TXT record or does not exist.
pub async fn txt(server: SocketAddr, name: &str) -> Result<Vec<String>, DnsError> {
    let id: u16 = rand::random();
    let query = encode_query(id, name);
    let bind: SocketAddr =
        if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let io = |source| DnsError::Io { server, source };
    let socket = UdpSocket::bind(bind).await.map_err(io)?;
    socket.send_to(&query, server).await.map_err(io)?;
    let mut buf = vec![0u8; 4096];
    let answer = loop {
        let (n, from) = tokio::time::timeout(TIMEOUT, socket.recv_from(&mut buf))
            .await
            .map_err(|_| DnsError::Timeout { server })?
            .map_err(io)?;
        if from == server && n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            break buf[..n].to_vec();
        }
    };
    // TC: the answer did not fit; ask again over TCP.
    let answer = if answer.len() > 2 && answer[2] & 0x02 != 0 {
        txt_tcp(server, &query).await?
    } else {
        answer
    };
    decode_txt(&answer, id).map_err(|rcode| match rcode {
        Some(rcode) => DnsError::Server { server, name: name.to_owned(), rcode },
        None => DnsError::Malformed { server },
    })
}

async fn txt_tcp(server: SocketAddr, query: &[u8]) -> Result<Vec<u8>, DnsError> {
    let io = |source| DnsError::Io { server, source };
    let exchange = async {
        let mut stream = TcpStream::connect(server).await.map_err(io)?;
        let mut framed = (query.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(query);
        stream.write_all(&framed).await.map_err(io)?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.map_err(io)?;
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut answer).await.map_err(io)?;
        Ok(answer)
    };
    tokio::time::timeout(TIMEOUT, exchange).await.map_err(|_| DnsError::Timeout { server })?
}

/// A query for the TXT records of `name`, recursion desired, with an EDNS0
/// OPT record offering 4096-byte UDP answers (a 2048-bit DKIM key does not
/// fit in 512).
pub fn encode_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]); // 1 question, 1 additional
    for label in name.trim_end_matches('.').split('.') {
        let label = &label.as_bytes()[..label.len().min(63)];
        q.push(label.len() as u8);
        q.extend_from_slice(label);
    }
    q.push(0);
    q.extend_from_slice(&TXT.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
                                              // OPT: root name, type 41, class = payload size, ttl 0, no data.
    q.push(0);
    q.extend_from_slice(&OPT.to_be_bytes());
    q.extend_from_slice(&4096u16.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    q
}

/// The TXT strings of an answer. Err(Some(rcode)) for a server error other
/// than "no such name", Err(None) when the answer cannot be read.
pub fn decode_txt(answer: &[u8], id: u16) -> Result<Vec<String>, Option<u8>> {
    let header = answer.get(..12).ok_or(None)?;
    if u16::from_be_bytes([header[0], header[1]]) != id {
        return Err(None);
    }
    let rcode = header[3] & 0x0f;
    match rcode {
        0 => {}
        3 => return Ok(Vec::new()), // NXDOMAIN: no record
        other => return Err(Some(other)),
    }
    let questions = u16::from_be_bytes([header[4], header[5]]);
    let answers = u16::from_be_bytes([header[6], header[7]]);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(answer, at).ok_or(None)? + 4;
    }
    let mut records = Vec::new();
    for _ in 0..answers {
        at = skip_name(answer, at).ok_or(None)?;
        let fixed = answer.get(at..at + 10).ok_or(None)?;
        let kind = u16::from_be_bytes([fixed[0], fixed[1]]);
        let len = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let data = answer.get(at + 10..at + 10 + len).ok_or(None)?;
        at += 10 + len;
        if kind != TXT {
            continue;
        }
        let mut text = Vec::new();
        let mut i = 0;
        while i < data.len() {
            let n = usize::from(data[i]);
            text.extend_from_slice(data.get(i + 1..i + 1 + n).ok_or(None)?);
            i += 1 + n;
        }
        records.push(String::from_utf8_lossy(&text).into_owned());
    }
    Ok(records)
}

/// The offset just past a (possibly compressed) name.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_answers_round_trip() {
        let q = encode_query(0x1234, "_dmarc.example.com");
        assert_eq!(&q[..2], &[0x12, 0x34]);
        assert!(q.windows(7).any(|w| w == b"\x06_dmarc"));
        // An answer: the question, then one TXT record in two strings, via a
        // compression pointer to the question's name.
        let mut a = q[..q.len() - 11].to_vec();
        a[2] = 0x81;
        a[3] = 0x80;
        a[6..8].copy_from_slice(&[0, 1]);
        a[10..12].copy_from_slice(&[0, 0]);
        a.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60]);
        let data = b"\x08v=DMARC1\x08; p=none";
        a.extend_from_slice(&(data.len() as u16).to_be_bytes());
        a.extend_from_slice(data);
        assert_eq!(decode_txt(&a, 0x1234).unwrap(), vec!["v=DMARC1; p=none".to_string()]);
        assert_eq!(decode_txt(&a[..a.len() - 3], 0x1234), Err(None), "a cut answer is refused");
        assert_eq!(decode_txt(&a, 0x9999), Err(None), "another query's answer is refused");
        a[3] = 0x83;
        assert_eq!(decode_txt(&a, 0x1234).unwrap(), Vec::<String>::new(), "NXDOMAIN: no record");
        a[3] = 0x82;
        assert_eq!(decode_txt(&a, 0x1234), Err(Some(2)), "SERVFAIL is an error");
    }
}
