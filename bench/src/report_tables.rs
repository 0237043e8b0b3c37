//! The markdown tables of a report, one per scenario, and the targets.

use std::fmt::Write as _;

use crate::report::{chat_row, count, ms, ModeReport};

/// `connections`: a row per mode.
pub(crate) fn connections(s: &mut String, modes: &[ModeReport]) {
    let rows: Vec<_> = modes
        .iter()
        .filter_map(|m| m.connections.as_ref().map(|c| (m.mode.name(), c)))
        .collect();
    let Some((_, first)) = rows.first() else {
        return;
    };
    let _ = writeln!(
        s,
        "## connections\n\nLinks logged in (to `SyncDone`) and held with heartbeats, \
         {} users, spread over the connectors and {} source addresses; idle CPU over {:.0} s. \
         RSS is that of the processes holding links.\n",
        first.users, first.source_addrs, first.idle_secs
    );
    let _ = writeln!(
        s,
        "| mode | links tried | open | new devices, logins/s | known devices, logins/s | \
         RSS per idle link (KiB) | idle CPU % (links / all) | load procs | generator RSS per link (KiB) |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    for (mode, c) in rows {
        let tried = match &c.capped_by {
            Some(_) => format!(
                "{} (of {})",
                count(c.attempted as f64),
                count(c.requested as f64)
            ),
            None => count(c.attempted as f64),
        };
        let _ = writeln!(
            s,
            "| {mode} | {tried} | {} | {} | {} | {:.2} | {:.1} / {:.1} | {} | {:.2} |",
            count(c.first_login.opened as f64),
            count(c.first_login.per_sec),
            count(c.relogin.per_sec),
            c.rss_per_link_kib,
            c.idle_cpu_percent,
            c.idle_server_cpu_percent,
            c.load_processes,
            c.generator_rss_per_link_kib,
        );
    }
    for (mode, c) in modes
        .iter()
        .filter_map(|m| m.connections.as_ref().map(|c| (m.mode.name(), c)))
    {
        if let Some(why) = &c.capped_by {
            let _ = writeln!(
                s,
                "\n{mode}: capped at {}: {why}.",
                count(c.attempted as f64)
            );
        }
    }
    s.push('\n');
}

/// `chat`: saturation and half rate per mode.
pub(crate) fn chat(s: &mut String, modes: &[ModeReport]) {
    let rows: Vec<_> = modes
        .iter()
        .filter_map(|m| m.chat.as_ref().map(|c| (m.mode.name(), c)))
        .collect();
    let Some((_, first)) = rows.first() else {
        return;
    };
    let _ = writeln!(
        s,
        "## chat\n\n{} pairs, each sender keeping up to {} messages in flight (until its \
         DELIVERED receipt is back); medians of {} runs of {:.0} s each. Delivered = messages \
         whose DELIVERED receipt reached the sender during the measurement. Latencies p50 / p99 / \
         p99.9 in ms.\n",
        first.pairs,
        first.in_flight,
        first.saturation.runs.len(),
        first.measure_secs
    );
    let _ = writeln!(
        s,
        "| mode | load | offered msg/s | delivered msg/s | send → SENT | send → arrival | \
         send → DELIVERED | server CPU % | generator CPU % | all delivered |\n\
         |---|---|---|---|---|---|---|---|---|---|"
    );
    for (mode, c) in rows {
        let _ = writeln!(s, "{}", chat_row(mode, "saturation", &c.saturation.median));
        let _ = writeln!(s, "{}", chat_row(mode, "half rate", &c.half_rate.median));
    }
    s.push('\n');
}

/// `group`: a row per mode and size.
pub(crate) fn group(s: &mut String, modes: &[ModeReport]) {
    let rows: Vec<_> = modes
        .iter()
        .flat_map(|m| m.group.iter().flatten().map(move |g| (m.mode.name(), g)))
        .collect();
    let Some((_, first)) = rows.first() else {
        return;
    };
    let _ = writeln!(
        s,
        "## group\n\nEvery member online; one message to the group, then a burst of {}. \
         Times from the send until the median / last member had it (all of the burst), and \
         until every DELIVERED receipt was back at the sender.\n",
        first.burst.messages
    );
    let _ = writeln!(
        s,
        "| mode | members | 1 msg: median / last member ms | 1 msg: deliveries/s | \
         1 msg: receipts back ms | burst: last member ms | burst: deliveries/s | \
         burst: receipts back ms | all delivered |\n|---|---|---|---|---|---|---|---|---|"
    );
    let opt = |v: Option<f64>| v.map_or("-".into(), ms);
    for (mode, g) in rows {
        let _ = writeln!(
            s,
            "| {mode} | {} | {} / {} | {} | {} | {} | {} | {} | {} |",
            count(g.members as f64),
            ms(g.one.median_member_ms),
            ms(g.one.last_member_ms),
            count(g.one.deliveries_per_sec),
            opt(g.one.receipts_ms),
            ms(g.burst.last_member_ms),
            count(g.burst.deliveries_per_sec),
            opt(g.burst.receipts_ms),
            if g.one.complete && g.burst.complete && g.error.is_none() {
                "yes"
            } else {
                "NO"
            }
        );
    }
    s.push('\n');
}

/// `offline`: a row per mode.
pub(crate) fn offline(s: &mut String, modes: &[ModeReport]) {
    let rows: Vec<_> = modes
        .iter()
        .filter_map(|m| m.offline.as_ref().map(|o| (m.mode.name(), o)))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "## offline\n\nA user with K messages queued while offline (sent by several friends, \
         each in a conversation of its own) logs in; drain = from connecting until `SyncDone` \
         (every message delivered).\n"
    );
    let _ = writeln!(
        s,
        "| mode | queued (senders) | queueing took (s) | drain ms | msg/s | received | in order, once, offline |\n\
         |---|---|---|---|---|---|---|"
    );
    for (mode, o) in rows {
        let _ = writeln!(
            s,
            "| {mode} | {} ({}) | {:.1} | {} | {} | {} | {} |",
            count(o.queued as f64),
            o.senders,
            o.queue_secs,
            ms(o.drain_ms),
            count(o.per_sec),
            count(o.received as f64),
            if o.in_order && o.all_offline && o.received == o.queued {
                "yes"
            } else {
                "NO"
            }
        );
    }
    s.push('\n');
}

/// A target's value in one mode and whether it was met.
fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "not met",
        None => "not at this size",
    }
}

/// Issue 5's targets against what each mode measured.
pub(crate) fn targets(s: &mut String, modes: &[ModeReport], size: &str) {
    let mut lines: Vec<(String, String, String)> = Vec::new();
    for m in modes {
        let mode = m.mode.name().to_owned();
        if let Some(c) = &m.connections {
            let held = c.first_login.opened as f64;
            lines.push((
                "200,000 links".into(),
                mode.clone(),
                format!(
                    "{} held: {}",
                    count(held),
                    verdict(
                        (held >= 200_000.0)
                            .then_some(true)
                            .or((c.requested >= 200_000).then_some(false))
                    )
                ),
            ));
            lines.push((
                "<= 4 KiB RSS per idle link".into(),
                mode.clone(),
                format!(
                    "{:.2} KiB: {}",
                    c.rss_per_link_kib,
                    verdict(Some(c.rss_per_link_kib <= 4.0))
                ),
            ));
            lines.push((
                ">= 20,000 link logins/s".into(),
                mode.clone(),
                format!(
                    "{} new / {} known devices: {}",
                    count(c.first_login.per_sec),
                    count(c.relogin.per_sec),
                    verdict(Some(
                        c.first_login.per_sec.max(c.relogin.per_sec) >= 20_000.0
                    ))
                ),
            ));
        }
        if let Some(c) = &m.chat {
            let (goal, name) = match m.mode {
                crate::target::Mode::Single => (100_000.0, "chat >= 100,000 msg/s (single node)"),
                crate::target::Mode::Cluster => (50_000.0, "chat >= 50,000 msg/s (cluster)"),
            };
            let rate = c.saturation.median.delivered_per_sec;
            lines.push((
                name.into(),
                mode.clone(),
                format!("{} msg/s: {}", count(rate), verdict(Some(rate >= goal))),
            ));
            let p99 = c.half_rate.median.to_arrival.p99_ms;
            lines.push((
                "chat p99 < 10 ms at half rate (send → arrival)".into(),
                mode.clone(),
                format!("{} ms: {}", ms(p99), verdict(Some(p99 < 10.0))),
            ));
        }
        if let Some(groups) = &m.group {
            if let Some(best) = groups
                .iter()
                .flat_map(|g| [&g.one, &g.burst])
                .filter(|round| round.complete)
                .map(|round| round.deliveries_per_sec)
                .max_by(f64::total_cmp)
            {
                lines.push((
                    "group fan-out 1,000,000 deliveries/s".into(),
                    mode.clone(),
                    format!("{}/s: {}", count(best), verdict(Some(best >= 1_000_000.0))),
                ));
            }
        }
        if let Some(o) = &m.offline {
            let met = (o.queued >= 10_000).then_some(o.drain_ms < 1_000.0 && o.in_order);
            lines.push((
                "offline drain of 10,000 in < 1 s".into(),
                mode.clone(),
                format!(
                    "{} in {} ms ({}/s): {}",
                    count(o.queued as f64),
                    ms(o.drain_ms),
                    count(o.per_sec),
                    verdict(met)
                ),
            ));
        }
    }
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "## targets (issue 5)\n\nMeasured at the {size} size; targets of scale (200,000 links, \
         10,000 offline) are judged only when the run reached that scale.\n\n\
         | target | mode | measured |\n|---|---|---|"
    );
    for (target, mode, measured) in lines {
        let _ = writeln!(s, "| {target} | {mode} | {measured} |");
    }
    s.push('\n');
}
