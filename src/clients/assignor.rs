//! Partition assignment strategies (section 3.3.2 of the Kafka primer, and KIP-429's cooperative
//! sticky assignor): pure functions from the members' subscriptions to an assignment.

use std::collections::{BTreeMap, BTreeSet};

use super::TopicPartition;
use crate::{Error, Result};

/// How the partitions of a group's subscriptions are shared among its members: Kafka's
/// `partition.assignment.strategy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AssignmentStrategy {
    /// Per topic, the partitions in order are cut into contiguous ranges, one per subscribed
    /// member in member-id order; the first `partitions % members` get one more. Kafka's
    /// `RangeAssignor` and its default before 3.0.
    #[default]
    Range,
    /// All subscribed partitions, sorted, dealt to the members in turn (a member is skipped for a
    /// topic it does not subscribe to). Kafka's `RoundRobinAssignor`.
    RoundRobin,
    /// Balanced like round robin, but a member keeps the partitions it owns where balance allows,
    /// and a rebalance revokes only the partitions that move (KIP-429's incremental cooperative
    /// protocol: a moving partition is revoked in one generation and assigned in the next).
    /// Kafka's `CooperativeStickyAssignor`.
    CooperativeSticky,
}

impl AssignmentStrategy {
    /// Whether rebalances revoke only what moves (cooperative) rather than everything (eager).
    pub fn is_cooperative(self) -> bool {
        self == AssignmentStrategy::CooperativeSticky
    }
}

impl std::str::FromStr for AssignmentStrategy {
    type Err = Error;
    fn from_str(s: &str) -> Result<AssignmentStrategy> {
        // Kafka's class names are accepted too, so a Java config carries over.
        match s.rsplit('.').next().unwrap_or(s) {
            "range" | "RangeAssignor" => Ok(AssignmentStrategy::Range),
            "roundrobin" | "round_robin" | "RoundRobinAssignor" => Ok(AssignmentStrategy::RoundRobin),
            "cooperative-sticky" | "cooperative_sticky" | "CooperativeStickyAssignor" => Ok(AssignmentStrategy::CooperativeSticky),
            _ => Err(Error::InvalidArgument(format!(
                "partition.assignment.strategy must be range, roundrobin or cooperative-sticky, not {s:?}"
            ))),
        }
    }
}

/// One member's input to an assignment.
pub struct MemberInput<'a> {
    pub topics: &'a BTreeSet<String>,
    /// Partitions it owns now (cooperative sticky keeps them where it can).
    pub owned: &'a [TopicPartition],
}

/// Assigns the partitions of `topics` (name → partition count) to `members` (id order).
pub fn assign(
    strategy: AssignmentStrategy,
    topics: &BTreeMap<String, u32>,
    members: &BTreeMap<u64, MemberInput<'_>>,
) -> BTreeMap<u64, Vec<TopicPartition>> {
    let mut out: BTreeMap<u64, Vec<TopicPartition>> = members.keys().map(|&m| (m, Vec::new())).collect();
    match strategy {
        AssignmentStrategy::Range => {
            for (topic, &n) in topics {
                let subs: Vec<u64> = members.iter().filter(|(_, m)| m.topics.contains(topic)).map(|(&id, _)| id).collect();
                if subs.is_empty() {
                    continue;
                }
                let (each, extra) = (n / subs.len() as u32, n % subs.len() as u32);
                let mut next = 0;
                for (i, id) in subs.iter().enumerate() {
                    let count = each + u32::from((i as u32) < extra);
                    let list = out.get_mut(id).expect("every member has a list");
                    list.extend((next..next + count).map(|p| TopicPartition::new(topic.clone(), p)));
                    next += count;
                }
            }
        }
        AssignmentStrategy::RoundRobin => {
            let ids: Vec<u64> = members.keys().copied().collect();
            let mut turn = 0usize;
            for (topic, &n) in topics {
                for p in 0..n {
                    // The next member in turn that subscribes to the topic.
                    for _ in 0..ids.len() {
                        let id = ids[turn % ids.len()];
                        turn += 1;
                        if members[&id].topics.contains(topic) {
                            out.get_mut(&id).expect("every member has a list").push(TopicPartition::new(topic.clone(), p));
                            break;
                        }
                    }
                }
            }
        }
        AssignmentStrategy::CooperativeSticky => sticky(topics, members, &mut out),
    }
    for list in out.values_mut() {
        list.sort();
    }
    out
}

/// Balanced and sticky: each member keeps what it owns up to its fair share; the rest goes to the
/// least loaded eligible member; then partitions move from the most to the least loaded while
/// that narrows the gap.
fn sticky(topics: &BTreeMap<String, u32>, members: &BTreeMap<u64, MemberInput<'_>>, out: &mut BTreeMap<u64, Vec<TopicPartition>>) {
    let all: Vec<TopicPartition> = topics
        .iter()
        .filter(|(t, _)| members.values().any(|m| m.topics.contains(*t)))
        .flat_map(|(t, &n)| (0..n).map(move |p| TopicPartition::new(t.clone(), p)))
        .collect();
    if members.is_empty() {
        return;
    }
    let fair_max = all.len().div_ceil(members.len());
    let valid: BTreeSet<&TopicPartition> = all.iter().collect();
    let mut taken: BTreeSet<TopicPartition> = BTreeSet::new();
    for (id, m) in members {
        let list = out.get_mut(id).expect("every member has a list");
        for tp in m.owned {
            if list.len() < fair_max && valid.contains(tp) && m.topics.contains(&tp.topic) && taken.insert(tp.clone()) {
                list.push(tp.clone());
            }
        }
    }
    for tp in all.iter().filter(|tp| !taken.contains(*tp)) {
        let best = members.iter().filter(|(_, m)| m.topics.contains(&tp.topic)).map(|(&id, _)| id).min_by_key(|id| (out[id].len(), *id));
        if let Some(id) = best {
            out.get_mut(&id).expect("every member has a list").push(tp.clone());
        }
    }
    // Even out: move one partition at a time from a most-loaded member to a least-loaded one that
    // may take it, while the gap is more than one.
    loop {
        let mut moved = false;
        let by_load: Vec<u64> = {
            let mut v: Vec<u64> = out.keys().copied().collect();
            v.sort_by_key(|id| (std::cmp::Reverse(out[id].len()), *id));
            v
        };
        'outer: for &from in &by_load {
            for &to in by_load.iter().rev() {
                if out[&from].len() <= out[&to].len() + 1 {
                    continue;
                }
                let to_topics = members[&to].topics;
                if let Some(pos) = out[&from].iter().rposition(|tp| to_topics.contains(&tp.topic)) {
                    let tp = out.get_mut(&from).expect("member").remove(pos);
                    out.get_mut(&to).expect("member").push(tp);
                    moved = true;
                    break 'outer;
                }
            }
        }
        if !moved {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(list: &[(u64, &[&str])]) -> BTreeMap<u64, BTreeSet<String>> {
        list.iter().map(|(id, ts)| (*id, ts.iter().map(|t| t.to_string()).collect())).collect()
    }

    fn run(
        strategy: AssignmentStrategy,
        topics: &[(&str, u32)],
        s: &BTreeMap<u64, BTreeSet<String>>,
        owned: &BTreeMap<u64, Vec<TopicPartition>>,
    ) -> BTreeMap<u64, Vec<TopicPartition>> {
        let topics: BTreeMap<String, u32> = topics.iter().map(|(t, n)| (t.to_string(), *n)).collect();
        let empty = Vec::new();
        let members = s.iter().map(|(id, t)| (*id, MemberInput { topics: t, owned: owned.get(id).unwrap_or(&empty) })).collect();
        assign(strategy, &topics, &members)
    }

    fn names(list: &[TopicPartition]) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn range_gives_contiguous_ranges_with_the_extra_to_the_first() {
        let s = subs(&[(1, &["t"]), (2, &["t"])]);
        let a = run(AssignmentStrategy::Range, &[("t", 3)], &s, &BTreeMap::new());
        assert_eq!(names(&a[&1]), ["t-0", "t-1"]);
        assert_eq!(names(&a[&2]), ["t-2"]);
    }

    #[test]
    fn round_robin_deals_across_topics_and_skips_non_subscribers() {
        let s = subs(&[(1, &["a", "b"]), (2, &["a"])]);
        let a = run(AssignmentStrategy::RoundRobin, &[("a", 2), ("b", 2)], &s, &BTreeMap::new());
        assert_eq!(names(&a[&1]), ["a-0", "b-0", "b-1"]);
        assert_eq!(names(&a[&2]), ["a-1"]);
    }

    #[test]
    fn sticky_keeps_owned_partitions_and_moves_only_what_balance_needs() {
        let s = subs(&[(1, &["t"]), (2, &["t"])]);
        let first = run(AssignmentStrategy::CooperativeSticky, &[("t", 6)], &s, &BTreeMap::new());
        assert_eq!(first[&1].len(), 3);
        // A third member joins: each of the two gives up exactly one partition.
        let s3 = subs(&[(1, &["t"]), (2, &["t"]), (3, &["t"])]);
        let second = run(AssignmentStrategy::CooperativeSticky, &[("t", 6)], &s3, &first);
        for id in [1, 2] {
            let kept = second[&id].iter().filter(|tp| first[&id].contains(tp)).count();
            assert_eq!(kept, 2, "member {id} keeps two of its three");
        }
        assert_eq!(second[&3].len(), 2);
    }
}
