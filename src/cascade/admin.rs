//! The admin side of a cascade: create root/branch/leaf nodes, list members, show the
//! tree with lags, pause and resume workers, change a node's provider, and take over a
//! root or branch (also when the old one is dead). Called by [`super::cli`]; tests call
//! it directly.
//!
//! Every command starts from one node (`--db`), and finds the others through the member
//! list (`pgq_node.node_location`), as Skytools' `qadmin`-style tools do. Steps that need
//! a worker to stand still (pause before changing provider) wait for the worker to
//! confirm through `uptodate`, at most `wait`; so those commands need the workers running.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::error::{Error, sql_err};
use super::handler::NodeType;
use super::node::{self, Member, NodeInfo};
use super::sql;

const APP: &str = "pgqd-cascade-admin";
/// How long a node gets to answer a connection attempt before it counts as dead.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One admin session: the queue, the node it starts from, and what it reports.
#[derive(Debug)]
pub struct Admin {
    /// The cascaded queue.
    pub queue: String,
    /// Connection string of the node the command starts from.
    pub db: String,
    /// How long to wait for a worker to confirm a pause or resume, or to catch up.
    pub wait: Duration,
    /// Lines for the operator, in order.
    pub out: Vec<String>,
}

/// How a node is created.
#[derive(Debug, Clone)]
pub struct CreateNode {
    /// Root, branch or leaf.
    pub node_type: NodeType,
    /// The new node's name.
    pub node_name: String,
    /// The connection string other nodes use to reach it (default: `--db`).
    pub location: Option<String>,
    /// The worker's consumer name (default: the node name).
    pub worker: Option<String>,
    /// Connection string of the provider (branch and leaf).
    pub provider: Option<String>,
}

impl Admin {
    /// An admin session for `queue` starting at the node in `db`.
    pub fn new(queue: &str, db: &str, wait: Duration) -> Admin {
        Admin {
            queue: queue.to_string(),
            db: db.to_string(),
            wait,
            out: Vec::new(),
        }
    }

    fn say(&mut self, line: impl Into<String>) {
        let line = line.into();
        tracing::info!("{line}");
        self.out.push(line);
    }

    async fn connect(&self, connstr: &str, what: &str) -> Result<Client, Error> {
        match tokio::time::timeout(CONNECT_TIMEOUT, node::connect(connstr, APP)).await {
            Ok(r) => r,
            Err(_) => Err(Error::State(format!(
                "{what}: no connection within {}s",
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Connects to the starting node and checks that pgq_node is there.
    async fn local(&self) -> Result<Client, Error> {
        let c = self.connect(&self.db, "db").await?;
        check_schema(&c, "db").await?;
        Ok(c)
    }

    /// The starting node's info; a usage error when the queue has no node there.
    async fn local_info(&self, c: &Client) -> Result<NodeInfo, Error> {
        node::node_info(c, "db", &self.queue).await?.ok_or_else(|| {
            Error::Usage(format!("no cascade node for queue {:?} in db", self.queue))
        })
    }

    /// The member list of the starting node, by name.
    async fn member_map(&self, c: &Client) -> Result<BTreeMap<String, Member>, Error> {
        Ok(node::members(c, "db", &self.queue)
            .await?
            .into_iter()
            .map(|m| (m.name.clone(), m))
            .collect())
    }

    fn member<'m>(
        &self,
        map: &'m BTreeMap<String, Member>,
        name: &str,
    ) -> Result<&'m Member, Error> {
        map.get(name).ok_or_else(|| {
            Error::Usage(format!(
                "unknown node {name:?} in queue {:?} (members: {})",
                self.queue,
                map.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// Connects to a member and reads its node info; None when it is unreachable or
    /// has no node (a dead member).
    async fn try_node(&self, m: &Member) -> Option<(Client, NodeInfo)> {
        let c = self.connect(&m.location, &m.name).await.ok()?;
        let info = node::node_info(&c, &m.name, &self.queue).await.ok()??;
        Some((c, info))
    }

    async fn node(&self, m: &Member) -> Result<(Client, NodeInfo), Error> {
        let c = self.connect(&m.location, &m.name).await?;
        let info = node::node_info(&c, &m.name, &self.queue)
            .await?
            .ok_or_else(|| {
                Error::State(format!("{}: no node for queue {:?}", m.name, self.queue))
            })?;
        Ok((c, info))
    }

    /// Creates a node in `db`: a root, or a branch or leaf subscribed to `provider`.
    pub async fn create(&mut self, spec: &CreateNode) -> Result<(), Error> {
        let name = spec.node_name.trim();
        if name.is_empty() {
            return Err(Error::Usage("node name is empty".into()));
        }
        let location = spec.location.clone().unwrap_or_else(|| self.db.clone());
        crate::conn::parse_connstr(&location)
            .map_err(|e| Error::Usage(format!("node location: {e}")))?;
        let worker = spec.worker.clone().unwrap_or_else(|| name.to_string());
        let local = self.local().await?;
        if let Some(info) = node::node_info(&local, name, &self.queue).await? {
            if info.node_name == name && info.node_type == spec.node_type {
                self.say(format!(
                    "node {name} already initialized as {}",
                    info.node_type.as_str()
                ));
                return Ok(());
            }
            return Err(Error::Usage(format!(
                "db already holds node {:?} ({}) for queue {:?}",
                info.node_name,
                info.node_type.as_str(),
                self.queue
            )));
        }
        let q = self.queue.clone();
        if spec.node_type == NodeType::Root {
            if spec.provider.is_some() {
                return Err(Error::Usage("a root has no provider".into()));
            }
            node::call(
                &local,
                name,
                sql::REGISTER_LOCATION,
                &[&q, &name, &location, &false],
            )
            .await?;
            node::call(
                &local,
                name,
                sql::CREATE_NODE,
                &[&q, &"root", &name, &worker, &None::<String>, &None::<i64>],
            )
            .await?;
            self.say(format!("root node {name} created for queue {q}"));
            return Ok(());
        }
        let Some(provider_loc) = spec.provider.clone() else {
            return Err(Error::Usage(format!(
                "a {} needs --provider",
                spec.node_type.as_str()
            )));
        };
        let provider = self.connect(&provider_loc, "provider").await?;
        check_schema(&provider, "provider").await?;
        let pinfo = node::node_info(&provider, "provider", &q)
            .await?
            .ok_or_else(|| Error::Usage(format!("provider has no node for queue {q:?}")))?;
        if pinfo.node_type == NodeType::Leaf {
            return Err(Error::Usage(format!(
                "provider {} is a leaf; only a root or branch can feed other nodes",
                pinfo.node_name
            )));
        }
        let (root, _root_info) = self.find_root(provider_loc.clone(), &pinfo).await?;
        let members = node::members(&root, "root", &q).await?;
        if members.iter().any(|m| m.name == name) {
            return Err(Error::Usage(format!(
                "node {name:?} already exists in queue {q:?}"
            )));
        }
        node::call(
            &root,
            "root",
            sql::REGISTER_LOCATION,
            &[&q, &name, &location, &false],
        )
        .await?;
        node::call(
            &provider,
            &pinfo.node_name,
            sql::REGISTER_LOCATION,
            &[&q, &name, &location, &false],
        )
        .await?;
        let row = node::call(
            &provider,
            &pinfo.node_name,
            sql::REGISTER_SUBSCRIBER,
            &[&q, &name, &worker, &None::<i64>],
        )
        .await?;
        let global_wm: Option<i64> = row
            .try_get(2)
            .map_err(sql_err(&pinfo.node_name, "pgq_node.register_subscriber"))?;
        node::call(
            &local,
            name,
            sql::REGISTER_LOCATION,
            &[&q, &name, &location, &false],
        )
        .await?;
        for m in &members {
            node::call(
                &local,
                name,
                sql::REGISTER_LOCATION,
                &[&q, &m.name, &m.location, &m.dead],
            )
            .await?;
        }
        node::call(
            &local,
            name,
            sql::CREATE_NODE,
            &[
                &q,
                &spec.node_type.as_str(),
                &name,
                &worker,
                &pinfo.node_name,
                &global_wm,
            ],
        )
        .await?;
        self.say(format!(
            "{} node {name} created for queue {q}, provider {}, starting at tick {}",
            spec.node_type.as_str(),
            pinfo.node_name,
            global_wm.map_or("-".to_string(), |t| t.to_string())
        ));
        Ok(())
    }

    /// Walks up from a node to the root through the providers.
    async fn find_root(
        &self,
        mut loc: String,
        info: &NodeInfo,
    ) -> Result<(Client, NodeInfo), Error> {
        let mut info = info.clone();
        for _ in 0..64 {
            if info.node_type == NodeType::Root {
                let c = self.connect(&loc, &info.node_name).await?;
                return Ok((c, info));
            }
            let next = info
                .provider_location
                .clone()
                .ok_or_else(|| Error::State(format!("{}: no provider location", info.node_name)))?;
            let c = self.connect(&next, "provider").await?;
            info = node::node_info(&c, "provider", &self.queue)
                .await?
                .ok_or_else(|| {
                    Error::State(format!(
                        "no node for the queue at {}",
                        crate::conn::mask_connstr(&next)
                    ))
                })?;
            loc = next;
        }
        Err(Error::State("no root found within 64 providers".into()))
    }

    /// The members as the starting node knows them: `name  location  [dead]`.
    pub async fn members(&mut self) -> Result<Vec<Member>, Error> {
        let local = self.local().await?;
        self.local_info(&local).await?;
        let ms = node::members(&local, "db", &self.queue).await?;
        for m in &ms {
            self.say(format!(
                "{}\t{}{}",
                m.name,
                crate::conn::mask_connstr(&m.location),
                if m.dead { "\tdead" } else { "" }
            ));
        }
        Ok(ms)
    }

    /// Sets a node's worker paused (or resumed) and waits until the worker confirms.
    pub async fn set_paused(&mut self, node_name: Option<&str>, paused: bool) -> Result<(), Error> {
        let local = self.local().await?;
        let info = self.local_info(&local).await?;
        let name = node_name.unwrap_or(&info.node_name).to_string();
        let map = self.member_map(&local).await?;
        let m = self.member(&map, &name)?.clone();
        let (c, ninfo) = self.node(&m).await?;
        self.pause_worker(&c, &name, &ninfo.worker_name, paused)
            .await
    }

    async fn pause_worker(
        &mut self,
        c: &Client,
        name: &str,
        worker: &str,
        paused: bool,
    ) -> Result<(), Error> {
        let q = self.queue.clone();
        node::call(c, name, sql::SET_PAUSED, &[&q, &worker, &paused]).await?;
        let word = if paused { "paused" } else { "resumed" };
        let deadline = Instant::now() + self.wait;
        loop {
            let r = node::call(c, name, sql::CONSUMER_STATE, &[&q, &worker]).await?;
            let now_paused: bool = r.try_get(2).map_err(sql_err(name, "get_consumer_state"))?;
            let uptodate: bool = r.try_get(3).map_err(sql_err(name, "get_consumer_state"))?;
            if now_paused != paused {
                return Err(Error::State(format!(
                    "{name}: worker {worker} was {} by someone else meanwhile",
                    if now_paused { "paused" } else { "resumed" }
                )));
            }
            if uptodate {
                self.say(format!("worker {worker} on node {name} {word}"));
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::State(format!(
                    "{name}: worker {worker} did not confirm being {word} within {}s; is it running?",
                    self.wait.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Moves `node_name`'s worker to read from `new_provider` (a node name), at the
    /// tick it has completed: nothing lost, nothing repeated. The old provider may be
    /// dead.
    pub async fn change_provider(
        &mut self,
        node_name: &str,
        new_provider: &str,
    ) -> Result<(), Error> {
        let local = self.local().await?;
        self.local_info(&local).await?;
        let map = self.member_map(&local).await?;
        drop(local);
        if node_name == new_provider {
            return Err(Error::Usage(format!(
                "node {node_name:?} cannot feed itself"
            )));
        }
        let m = self.member(&map, node_name)?.clone();
        let pm = self.member(&map, new_provider)?.clone();
        let (c, info) = self.node(&m).await?;
        if info.node_type == NodeType::Root {
            return Err(Error::Usage(format!(
                "{node_name} is the root; use takeover to move the root"
            )));
        }
        let (pc, pinfo) = self.node(&pm).await?;
        if pinfo.node_type == NodeType::Leaf {
            return Err(Error::Usage(format!(
                "{new_provider} is a leaf; only a root or branch can feed other nodes"
            )));
        }
        let old = info.provider_node.clone().unwrap_or_default();
        if old == new_provider {
            self.say(format!("{node_name} already reads from {new_provider}"));
            return Ok(());
        }
        self.pause_worker(&c, node_name, &info.worker_name, true)
            .await?;
        let q = self.queue.clone();
        let r = node::call(&c, node_name, sql::CONSUMER_STATE, &[&q, &info.worker_name]).await?;
        let tick: Option<i64> = r
            .try_get(4)
            .map_err(sql_err(node_name, "get_consumer_state"))?;
        node::call(
            &pc,
            new_provider,
            sql::REGISTER_LOCATION,
            &[&q, &node_name, &m.location, &false],
        )
        .await?;
        // A registration left from an earlier subscription (the provider was
        // unreachable when the node moved away) would block the new one; 304 means none.
        pc.query_one(sql::UNREGISTER_SUBSCRIBER, &[&q, &node_name])
            .await
            .map_err(sql_err(new_provider, "pgq_node.unregister_subscriber"))?;
        node::call(
            &pc,
            new_provider,
            sql::REGISTER_SUBSCRIBER,
            &[&q, &node_name, &info.worker_name, &tick],
        )
        .await?;
        node::call(
            &c,
            node_name,
            sql::CHANGE_PROVIDER,
            &[&q, &info.worker_name, &new_provider],
        )
        .await?;
        self.pause_worker(&c, node_name, &info.worker_name, false)
            .await?;
        self.say(format!(
            "{node_name} now reads from {new_provider} (was {old}), from tick {}",
            tick.map_or("-".to_string(), |t| t.to_string())
        ));
        if let Some(om) = map.get(&old) {
            match self.connect(&om.location, &old).await {
                Ok(oc) => {
                    if let Err(e) =
                        node::call(&oc, &old, sql::UNREGISTER_SUBSCRIBER, &[&q, &node_name]).await
                    {
                        self.say(format!("warning: cannot unsubscribe {node_name} from {old}: {e}"));
                    }
                }
                Err(e) => self.say(format!(
                    "warning: old provider {old} unreachable, its registration of {node_name} stays: {e}"
                )),
            }
        }
        Ok(())
    }

    /// Tags `dead` as dead on every reachable member.
    async fn tag_dead(&mut self, map: &BTreeMap<String, Member>, dead: &str) -> Result<(), Error> {
        let q = self.queue.clone();
        for m in map.values().filter(|m| m.name != dead) {
            match self.connect(&m.location, &m.name).await {
                Ok(c) => {
                    node::call(
                        &c,
                        &m.name,
                        sql::REGISTER_LOCATION,
                        &[&q, &dead, &None::<String>, &true],
                    )
                    .await?;
                }
                Err(e) => self.say(format!("warning: {} unreachable: {e}", m.name)),
            }
        }
        self.say(format!("node {dead} tagged dead"));
        Ok(())
    }

    /// The members whose provider is `parent`, among those reachable, with their info.
    async fn subscribers_of(
        &self,
        map: &BTreeMap<String, Member>,
        parent: &str,
    ) -> Vec<(String, NodeInfo)> {
        let mut out = Vec::new();
        for m in map.values().filter(|m| m.name != parent && !m.dead) {
            if let Some((_, info)) = self.try_node(m).await
                && info.node_type != NodeType::Root
                && info.provider_node.as_deref() == Some(parent)
            {
                out.push((m.name.clone(), info));
            }
        }
        out
    }

    /// The root is dead: `new_node` first catches up from the branch among the dead
    /// root's subscribers that got furthest (so no subscriber is ahead of the new root),
    /// is promoted, then the dead root's subscribers move under it.
    async fn failover_root(
        &mut self,
        om: &Member,
        new_node: &str,
        nc: &Client,
        ninfo: &NodeInfo,
        subs: Vec<(String, NodeInfo)>,
    ) -> Result<(), Error> {
        let q = self.queue.clone();
        let top = queue_top(nc, new_node, &q).await?;
        let best = subs
            .iter()
            .filter(|(_, i)| i.node_type == NodeType::Branch)
            .filter_map(|(n, i)| i.last_tick.map(|t| (n.clone(), t)))
            .max_by_key(|(_, t)| *t)
            .filter(|(_, t)| *t > top);
        if let Some((b, t)) = &best {
            self.say(format!(
                "{b} is ahead of {new_node} (tick {t} > {top}); catching up from it first"
            ));
            self.change_provider(new_node, b).await?;
            self.wait_completed(nc, new_node, &ninfo.worker_name, *t)
                .await?;
        }
        self.takeover_root(None, om, new_node, nc, ninfo).await?;
        if let Some((b, _)) = &best {
            // The new root no longer reads from the branch it caught up from.
            let map = self.member_map(nc).await?;
            if let Some(bm) = map.get(b) {
                let bc = self.connect(&bm.location, b).await?;
                node::call(&bc, b, sql::UNREGISTER_SUBSCRIBER, &[&q, &new_node]).await?;
            }
        }
        for (s, _) in &subs {
            self.change_provider(s, new_node).await?;
        }
        Ok(())
    }

    /// `new_node` takes over from `old_node`: becomes root in place of a root, or the
    /// provider of a branch's subscribers. With `dead`, the old node is tagged dead and
    /// not contacted; its subscribers move to `new_node`.
    pub async fn takeover(
        &mut self,
        old_node: &str,
        new_node: &str,
        dead: bool,
    ) -> Result<(), Error> {
        if old_node == new_node {
            return Err(Error::Usage("old and new node are the same".into()));
        }
        let local = self.local().await?;
        self.local_info(&local).await?;
        let map = self.member_map(&local).await?;
        drop(local);
        let om = self.member(&map, old_node)?.clone();
        let nm = self.member(&map, new_node)?.clone();
        let (nc, ninfo) = self.node(&nm).await?;
        let old = if dead {
            None
        } else {
            Some(self.node(&om).await?)
        };
        let old_type = match &old {
            Some((_, i)) => i.node_type,
            // A dead node was the root when no live member is one.
            None => {
                let others: BTreeMap<String, Member> = map
                    .iter()
                    .filter(|(k, _)| k.as_str() != old_node)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if self.live_root(&others).await.is_ok() {
                    NodeType::Branch
                } else {
                    NodeType::Root
                }
            }
        };
        if ninfo.node_type == NodeType::Leaf && old_type == NodeType::Root {
            return Err(Error::Usage(format!(
                "{new_node} is a leaf; only a branch can become root"
            )));
        }
        if dead {
            self.tag_dead(&map, old_node).await?;
            let subs: Vec<(String, NodeInfo)> = self
                .subscribers_of(&map, old_node)
                .await
                .into_iter()
                .filter(|(n, _)| n != new_node)
                .collect();
            if old_type == NodeType::Root {
                return self.failover_root(&om, new_node, &nc, &ninfo, subs).await;
            }
            for (s, _) in &subs {
                self.change_provider(s, new_node).await?;
            }
        }
        match old_type {
            NodeType::Root => self.takeover_root(old, &om, new_node, &nc, &ninfo).await,
            _ => {
                if dead {
                    if ninfo.provider_node.as_deref() == Some(old_node) {
                        let root = self.root_of(&map, new_node).await?;
                        let root = if root == old_node {
                            self.live_root(&map).await?
                        } else {
                            root
                        };
                        self.change_provider(new_node, &root).await?;
                    }
                    return Ok(());
                }
                // new reads from old: first move new up to old's provider.
                if ninfo.provider_node.as_deref() == Some(old_node) {
                    let (_, oinfo) = old
                        .as_ref()
                        .ok_or_else(|| Error::State("old node gone".into()))?;
                    let up = oinfo.provider_node.clone().unwrap_or_default();
                    self.change_provider(new_node, &up).await?;
                }
                self.change_provider(old_node, new_node).await
            }
        }
    }

    /// The root at the top of `name`'s provider chain, by member names (dead ones too).
    async fn root_of(&self, map: &BTreeMap<String, Member>, name: &str) -> Result<String, Error> {
        let mut cur = name.to_string();
        for _ in 0..64 {
            let m = self.member(map, &cur)?;
            let Some((_, info)) = self.try_node(m).await else {
                return Ok(cur);
            };
            match (info.node_type, info.provider_node) {
                (NodeType::Root, _) | (_, None) => return Ok(cur),
                (_, Some(p)) => cur = p,
            }
        }
        Err(Error::State("no root found within 64 providers".into()))
    }

    async fn live_root(&self, map: &BTreeMap<String, Member>) -> Result<String, Error> {
        for m in map.values().filter(|m| !m.dead) {
            if let Some((_, i)) = self.try_node(m).await
                && i.node_type == NodeType::Root
            {
                return Ok(m.name.clone());
            }
        }
        Err(Error::State("no live root among the members".into()))
    }

    async fn takeover_root(
        &mut self,
        old: Option<(Client, NodeInfo)>,
        om: &Member,
        new_node: &str,
        nc: &Client,
        ninfo: &NodeInfo,
    ) -> Result<(), Error> {
        let q = self.queue.clone();
        let old_node = om.name.clone();
        let last_tick = match &old {
            Some((oc, oinfo)) => {
                self.pause_worker(oc, &old_node, &oinfo.worker_name, true)
                    .await?;
                node::call(oc, &old_node, sql::DEMOTE, &[&q, &1i32, &new_node]).await?;
                let r = node::call(oc, &old_node, sql::DEMOTE, &[&q, &2i32, &new_node]).await?;
                let t: Option<i64> = r.try_get(2).map_err(sql_err(&old_node, "demote_root"))?;
                let t =
                    t.ok_or_else(|| Error::State(format!("{old_node}: demote gave no tick")))?;
                self.say(format!("old root {old_node} stopped writes at tick {t}"));
                self.wait_completed(nc, new_node, &ninfo.worker_name, t)
                    .await?;
                t
            }
            None => queue_top(nc, new_node, &q).await?,
        };
        self.pause_worker(nc, new_node, &ninfo.worker_name, true)
            .await?;
        node::call(nc, new_node, sql::PROMOTE, &[&q]).await?;
        self.say(format!("{new_node} promoted to root at tick {last_tick}"));
        let old_worker = match &old {
            Some((_, i)) => i.worker_name.clone(),
            None => old_node.clone(),
        };
        if old.is_some() {
            node::call(
                nc,
                new_node,
                sql::REGISTER_SUBSCRIBER,
                &[&q, &old_node, &old_worker, &Some(last_tick)],
            )
            .await?;
        }
        if let Some((oc, _)) = &old {
            // The new root no longer reads from the old one.
            if ninfo.provider_node.as_deref() == Some(&old_node) {
                node::call(oc, &old_node, sql::UNREGISTER_SUBSCRIBER, &[&q, &new_node]).await?;
            }
        }
        self.pause_worker(nc, new_node, &ninfo.worker_name, false)
            .await?;
        if let Some((oc, oinfo)) = &old {
            node::call(oc, &old_node, sql::DEMOTE, &[&q, &3i32, &new_node]).await?;
            self.pause_worker(oc, &old_node, &oinfo.worker_name, false)
                .await?;
            self.say(format!("{old_node} is now a branch of {new_node}"));
        }
        Ok(())
    }

    /// Waits until the worker of `name` has completed `tick`.
    async fn wait_completed(
        &mut self,
        c: &Client,
        name: &str,
        worker: &str,
        tick: i64,
    ) -> Result<(), Error> {
        let q = self.queue.clone();
        let deadline = Instant::now() + self.wait;
        loop {
            let r = node::call(c, name, sql::CONSUMER_STATE, &[&q, &worker]).await?;
            let done: Option<i64> = r.try_get(4).map_err(sql_err(name, "get_consumer_state"))?;
            let paused: bool = r.try_get(2).map_err(sql_err(name, "get_consumer_state"))?;
            if done.is_some_and(|d| d >= tick) {
                return Ok(());
            }
            if paused {
                self.pause_worker(c, name, worker, false).await?;
            }
            if Instant::now() >= deadline {
                return Err(Error::State(format!(
                    "{name}: did not reach tick {tick} within {}s (at {done:?})",
                    self.wait.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Moves a plain pgq consumer from one node's copy of the queue to another's, at the
    /// tick it has reached: the ticks are the same on every node, so it neither skips
    /// nor repeats events. The consumer must not be running meanwhile.
    pub async fn move_consumer(
        &mut self,
        consumer: &str,
        from: &str,
        to: &str,
    ) -> Result<i64, Error> {
        let local = self.local().await?;
        self.local_info(&local).await?;
        let map = self.member_map(&local).await?;
        drop(local);
        let fm = self.member(&map, from)?.clone();
        let tm = self.member(&map, to)?.clone();
        let (fc, finfo) = self.node(&fm).await?;
        let (tc, tinfo) = self.node(&tm).await?;
        for (n, i) in [(from, &finfo), (to, &tinfo)] {
            if i.node_type == NodeType::Leaf {
                return Err(Error::Usage(format!(
                    "{n} is a leaf: it has no copy of the queue"
                )));
            }
        }
        let q = self.queue.clone();
        let row = fc
            .query_opt(sql::CONSUMER_LAST_TICK, &[&q, &consumer])
            .await
            .map_err(sql_err(from, "pgq.get_consumer_info"))?
            .ok_or_else(|| {
                Error::Usage(format!("consumer {consumer:?} is not registered on {from}"))
            })?;
        let tick: i64 = row
            .try_get(0)
            .map_err(sql_err(from, "pgq.get_consumer_info"))?;
        tc.query_one(sql::REGISTER_CONSUMER_AT, &[&q, &consumer, &tick])
            .await
            .map_err(sql_err(to, "pgq.register_consumer_at"))?;
        self.say(format!(
            "consumer {consumer} registered on {to} at tick {tick} (as on {from})"
        ));
        Ok(tick)
    }
}

/// The newest tick of the node's copy of the queue.
async fn queue_top(c: &Client, name: &str, queue: &str) -> Result<i64, Error> {
    let r = c
        .query_one(sql::QUEUE_INFO, &[&queue])
        .await
        .map_err(sql_err(name, "pgq.get_queue_info"))?;
    r.try_get::<_, Option<i64>>(0)
        .map_err(sql_err(name, "pgq.get_queue_info"))?
        .ok_or_else(|| Error::State(format!("{name}: queue has no tick")))
}

/// A usage error when pgq or pgq_node is missing from the database.
async fn check_schema(c: &Client, what: &str) -> Result<(), Error> {
    let r = c
        .query_one(
            "select to_regnamespace('pgq') is not null, to_regnamespace('pgq_node') is not null",
            &[],
        )
        .await
        .map_err(sql_err(what, "schema check"))?;
    let pgq: bool = r.try_get(0).map_err(sql_err(what, "schema check"))?;
    let pgq_node: bool = r.try_get(1).map_err(sql_err(what, "schema check"))?;
    if !pgq || !pgq_node {
        return Err(Error::Usage(format!(
            "{what}: pgq and pgq_node must be installed (pgqd install --component pgq,node)"
        )));
    }
    Ok(())
}
