//! A real network partition for one process: a network namespace joined to the host by a
//! veth pair (`ip netns`, `ip link … type veth`; root only). A program started through
//! [`NetPair::wrapper`] reaches the host at [`NetPair::host_ip`]; [`NetPair::cut`] takes
//! the namespace's end of the link down, so packets are lost in both directions and both
//! TCP stacks must find out by retransmission or keepalive timeouts — which a userspace
//! proxy cannot show, since its kernel keeps acknowledging. Removed on drop.
//!
//! Used by `partition.rs`. The host side gets one extra interface on a private /30 for the
//! life of the test; nothing else of the host's network is touched.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A namespace and the veth pair to it.
pub struct NetPair {
    ns: String,
    inner_if: String,
    /// The host's address on the link (listen here).
    pub host_ip: String,
    /// The namespace's address on the link.
    pub ns_ip: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("run ip (package iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetPair {
    /// Creates the namespace and the link; Err says why it is not possible here.
    pub fn create() -> Result<NetPair, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("network namespaces need root".into());
        }
        let n = std::process::id() % 10_000 * 10 + SEQ.fetch_add(1, Ordering::Relaxed) % 10;
        let ns = format!("pgqd-part-{n}");
        let host_if = format!("pqh{n}");
        let inner_if = format!("pqn{n}");
        // A /30 per pair, from the process id, so parallel test processes do not collide.
        let (a, b) = ((n / 64) % 250, (n % 64) * 4);
        let pair = NetPair {
            ns: ns.clone(),
            inner_if: inner_if.clone(),
            host_ip: format!("10.213.{a}.{}", b + 1),
            ns_ip: format!("10.213.{a}.{}", b + 2),
        };
        ip(&["netns", "add", &ns])?;
        // From here on, Drop removes the namespace (and with it both ends of the link).
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &inner_if, "netns", &ns,
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", pair.host_ip),
            "dev",
            &host_if,
        ])?;
        ip(&["link", "set", &host_if, "up"])?;
        pair.in_ns(&[
            "addr",
            "add",
            &format!("{}/30", pair.ns_ip),
            "dev",
            &inner_if,
        ])?;
        pair.in_ns(&["link", "set", &inner_if, "up"])?;
        pair.in_ns(&["link", "set", "lo", "up"])?;
        Ok(pair)
    }

    fn in_ns(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["netns", "exec", &self.ns, "ip"];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// The command prefix that runs a program inside the namespace.
    pub fn wrapper(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.ns]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// The partition: the namespace's end of the link goes down.
    pub fn cut(&self) {
        self.in_ns(&["link", "set", &self.inner_if, "down"])
            .expect("cut the link");
    }

    /// The link comes back.
    pub fn heal(&self) {
        self.in_ns(&["link", "set", &self.inner_if, "up"])
            .expect("heal the link");
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.ns]);
    }
}
