//! The in-process group coordinator: which consumers of this process belong to which group, and
//! which partitions each owns in which generation.
//!
//! Kafka's protocol, on one machine. A change (a member joins or leaves, a member stops polling
//! for `max.poll.interval.ms`, a subscribed topic gains partitions or a pattern matches a new
//! topic) starts a rebalance. Each member notices it in its next `poll`, revokes (everything
//! under an eager strategy; nothing yet under the cooperative one) and rejoins, reporting what it
//! still owns. When every member has rejoined, the last one computes the assignment and the group
//! moves to the next generation; each member then adopts its share in its own `poll`. Under the
//! cooperative strategy a partition that must move is withheld from its new owner for one
//! generation, while the old owner revokes it, and a follow-up rebalance hands it over: no
//! partition is ever owned by two members at once.
//!
//! Commits are checked against the generation: a member may commit only partitions of its
//! current assignment, so a member that lost a partition cannot overwrite its new owner's
//! progress ([`Error::CommitFailed`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::TopicPartition;
use super::assignor::{AssignmentStrategy, MemberInput, assign};
use crate::{Error, Result};

/// What a member subscribes to, resolved against the topics that exist.
#[derive(Clone, Debug)]
pub enum Interest {
    Topics(BTreeSet<String>),
    Pattern(regex::Regex),
}

impl Interest {
    /// The existing topics this subscription covers.
    pub fn resolve(&self, metadata: &BTreeMap<String, u32>) -> BTreeSet<String> {
        match self {
            Interest::Topics(t) => t.iter().filter(|t| metadata.contains_key(*t)).cloned().collect(),
            Interest::Pattern(re) => metadata.keys().filter(|t| !t.starts_with("__") && re.is_match(t)).cloned().collect(),
        }
    }
}

struct Member {
    interest: Interest,
    last_poll: Instant,
    max_poll_interval: Duration,
    /// What it reported owning when it last rejoined.
    owned: Vec<TopicPartition>,
}

#[derive(Default)]
struct Group {
    /// Starts at 0; the first completed rebalance makes it 1.
    generation: u32,
    strategy: Option<AssignmentStrategy>,
    members: BTreeMap<u64, Member>,
    rebalancing: bool,
    joined: BTreeSet<u64>,
    assignment: BTreeMap<u64, Vec<TopicPartition>>,
    /// The topics (with partition counts) the current assignment covers.
    covered: BTreeMap<String, u32>,
    /// The latest topic metadata a member brought, for completing a round when a heartbeat
    /// without fresh metadata removes a member.
    metadata: BTreeMap<String, u32>,
}

impl Group {
    fn start_rebalance(&mut self) {
        if !self.rebalancing {
            self.rebalancing = true;
            self.joined.clear();
        }
    }

    /// The topics the members' subscriptions cover now, with their partition counts.
    fn wanted(&self, metadata: &BTreeMap<String, u32>) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for m in self.members.values() {
            for t in m.interest.resolve(metadata) {
                out.insert(t.clone(), metadata[&t]);
            }
        }
        out
    }

    /// Completes the round if every member has rejoined.
    fn try_complete(&mut self, metadata: &BTreeMap<String, u32>) -> bool {
        if !self.rebalancing || self.members.keys().any(|m| !self.joined.contains(m)) {
            return false;
        }
        let strategy = self.strategy.unwrap_or_default();
        let topics = self.wanted(metadata);
        let resolved: BTreeMap<u64, BTreeSet<String>> = self.members.iter().map(|(&id, m)| (id, m.interest.resolve(metadata))).collect();
        let inputs: BTreeMap<u64, MemberInput<'_>> =
            self.members.iter().map(|(&id, m)| (id, MemberInput { topics: &resolved[&id], owned: &m.owned })).collect();
        let mut target = assign(strategy, &topics, &inputs);
        let mut follow_up = false;
        if strategy.is_cooperative() {
            // A partition another member still owns is withheld this generation.
            let owner: HashMap<&TopicPartition, u64> =
                self.members.iter().flat_map(|(&id, m)| m.owned.iter().map(move |tp| (tp, id))).collect();
            for (id, list) in target.iter_mut() {
                list.retain(|tp| match owner.get(tp) {
                    Some(o) if o != id => {
                        follow_up = true;
                        false
                    }
                    _ => true,
                });
            }
        }
        self.assignment = target;
        self.covered = topics;
        self.generation += 1;
        self.rebalancing = false;
        self.joined.clear();
        if follow_up {
            self.start_rebalance();
        }
        true
    }
}

/// What a member must do next, as its `poll` learns from the coordinator.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Its assignment for its generation stands.
    Stable,
    /// A new generation: adopt this assignment.
    Assign { generation: u32, partitions: Vec<TopicPartition> },
    /// A rebalance started: revoke as the strategy says, then [`Coordinator::rejoin`].
    Rejoin,
    /// Rejoined; waiting for the others.
    Waiting,
    /// The group dropped it (it did not poll within `max.poll.interval.ms`): its partitions are
    /// lost; join again as a new member.
    Removed,
}

/// The groups of one data directory in this process.
#[derive(Default)]
pub struct Coordinator {
    groups: Mutex<HashMap<String, Group>>,
    changed: Condvar,
    next_member: std::sync::atomic::AtomicU64,
}

/// Each data directory's coordinator, while any consumer of it lives.
type Registry = Mutex<Vec<(PathBuf, Weak<Coordinator>)>>;

fn registry() -> &'static Registry {
    static REGISTRY: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

impl Coordinator {
    /// The coordinator of `dir` in this process: every handle on the directory (the writer and
    /// read-only handles alike) shares it.
    pub fn for_dir(dir: &Path) -> Arc<Coordinator> {
        let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
        reg.retain(|(_, w)| w.strong_count() > 0);
        if let Some(c) = reg.iter().find(|(p, _)| *p == key).and_then(|(_, w)| w.upgrade()) {
            return c;
        }
        let c = Arc::new(Coordinator::default());
        reg.push((key, Arc::downgrade(&c)));
        c
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a member to `group`; a rebalance starts. Returns its member id.
    pub fn join(&self, group: &str, interest: Interest, strategy: AssignmentStrategy, max_poll_interval: Duration) -> Result<u64> {
        let mut groups = self.lock();
        let g = groups.entry(group.to_string()).or_default();
        match g.strategy {
            Some(s) if s != strategy && !g.members.is_empty() => {
                return Err(Error::InvalidArgument(format!(
                    "group {group:?} assigns with {s:?}; a member using {strategy:?} cannot join it (Kafka's INCONSISTENT_GROUP_PROTOCOL)"
                )));
            }
            _ => g.strategy = Some(strategy),
        }
        let id = self.next_member.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        g.members.insert(id, Member { interest, last_poll: Instant::now(), max_poll_interval, owned: Vec::new() });
        g.start_rebalance();
        drop(groups);
        self.changed.notify_all();
        Ok(id)
    }

    /// Changes what a member subscribes to; a rebalance starts.
    pub fn resubscribe(&self, group: &str, member: u64, interest: Interest) {
        let mut groups = self.lock();
        if let Some(g) = groups.get_mut(group)
            && let Some(m) = g.members.get_mut(&member)
        {
            m.interest = interest;
            g.start_rebalance();
        }
        drop(groups);
        self.changed.notify_all();
    }

    /// Removes a member (its consumer closed or unsubscribed); a rebalance starts for the others.
    pub fn leave(&self, group: &str, member: u64, metadata: &BTreeMap<String, u32>) {
        let mut groups = self.lock();
        if let Some(g) = groups.get_mut(group)
            && g.members.remove(&member).is_some()
        {
            g.assignment.remove(&member);
            g.joined.remove(&member);
            // An empty group keeps its generation, so that generations never repeat.
            if !g.members.is_empty() {
                g.start_rebalance();
                g.try_complete(metadata);
            }
        }
        drop(groups);
        self.changed.notify_all();
    }

    /// A member's heartbeat from `poll`: notes that it is alive, drops members that stopped
    /// polling, starts a rebalance when the topics it covers changed (`metadata`: every topic's
    /// partition count, when the caller refreshed it), and says what the member must do.
    pub fn heartbeat(&self, group: &str, member: u64, generation: u32, metadata: Option<&BTreeMap<String, u32>>) -> Step {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group) else { return Step::Removed };
        let now = Instant::now();
        match g.members.get_mut(&member) {
            Some(m) => m.last_poll = now,
            None => return Step::Removed,
        }
        let expired: Vec<u64> =
            g.members.iter().filter(|(_, m)| now.duration_since(m.last_poll) > m.max_poll_interval).map(|(&id, _)| id).collect();
        let mut changed = false;
        for id in expired {
            log::warn!("group {group}: member {id} did not poll within max.poll.interval.ms; it leaves the group");
            g.members.remove(&id);
            g.assignment.remove(&id);
            g.joined.remove(&id);
            g.start_rebalance();
            changed = true;
        }
        if let Some(md) = metadata
            && !g.rebalancing
            && g.wanted(md) != g.covered
        {
            g.start_rebalance();
            changed = true;
        }
        if let Some(md) = metadata {
            g.metadata = md.clone();
        }
        if changed {
            let md = g.metadata.clone();
            g.try_complete(&md);
        }
        let step = if g.generation != generation && !g.joined.contains(&member) {
            if g.rebalancing && g.generation == 0 {
                // The group has never completed a round: nothing to adopt yet.
                Step::Rejoin
            } else {
                Step::Assign { generation: g.generation, partitions: g.assignment.get(&member).cloned().unwrap_or_default() }
            }
        } else if g.rebalancing {
            if g.joined.contains(&member) { Step::Waiting } else { Step::Rejoin }
        } else {
            Step::Stable
        };
        drop(groups);
        if changed {
            self.changed.notify_all();
        }
        step
    }

    /// The member has revoked what the strategy asked and rejoins, still owning `owned`. The
    /// round completes if it was the last.
    pub fn rejoin(&self, group: &str, member: u64, owned: Vec<TopicPartition>, metadata: &BTreeMap<String, u32>) -> Step {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group) else { return Step::Removed };
        let Some(m) = g.members.get_mut(&member) else { return Step::Removed };
        m.owned = owned;
        m.last_poll = Instant::now();
        g.joined.insert(member);
        g.metadata = metadata.clone();
        let done = g.try_complete(metadata);
        drop(groups);
        if done {
            self.changed.notify_all();
        }
        if done { Step::Stable } else { Step::Waiting }
    }

    /// Sleeps until the group changes or `timeout` passes.
    pub fn wait(&self, timeout: Duration) {
        let groups = self.lock();
        let _ = self.changed.wait_timeout(groups, timeout);
    }

    /// Whether `group` has a rebalance under way (or a generation `generation` is behind).
    pub fn needs_attention(&self, group: &str, member: u64, generation: u32) -> bool {
        let groups = self.lock();
        match groups.get(group) {
            Some(g) => g.rebalancing || g.generation != generation || !g.members.contains_key(&member),
            None => true,
        }
    }

    /// Checks that `member`, in `generation`, may commit offsets for `partitions`.
    pub fn check_commit(&self, group: &str, member: u64, generation: u32, partitions: &[&TopicPartition]) -> Result<()> {
        let groups = self.lock();
        let g = groups.get(group).ok_or_else(|| Error::CommitFailed(format!("this consumer is no longer a member of group {group:?}")))?;
        if !g.members.contains_key(&member) {
            return Err(Error::CommitFailed(format!(
                "this consumer was removed from group {group:?} (it did not poll within max.poll.interval.ms)"
            )));
        }
        if g.generation != generation {
            return Err(Error::CommitFailed(format!(
                "group {group:?} rebalanced: this consumer is at generation {generation}, the group at {}",
                g.generation
            )));
        }
        let mine = g.assignment.get(&member).map(Vec::as_slice).unwrap_or_default();
        if let Some(tp) = partitions.iter().find(|tp| !mine.contains(tp)) {
            return Err(Error::CommitFailed(format!("partition {tp} is not assigned to this consumer in generation {generation}")));
        }
        Ok(())
    }
}
