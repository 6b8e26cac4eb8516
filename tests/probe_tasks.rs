//! Task tracking and LeakCheck.

use std::time::Duration;

use pinchpoint::metrics::families;
use pinchpoint::probe::task::{self, LeakCheck};

#[tokio::test]
async fn leak_check_reports_a_never_ending_task_with_its_name_and_site() {
    let check = LeakCheck::start();
    let line = line!() + 1;
    let h = task::spawn("test.leaker", std::future::pending::<()>());
    let err = check.finish(Duration::from_millis(200)).await.expect_err("a pending task is a leak");
    assert_eq!(err.tasks.len(), 1);
    let t = &err.tasks[0];
    assert_eq!(t.name, Some("test.leaker"));
    assert_eq!(t.site, format!("{}:{}", file!(), line));
    assert!(t.age >= Duration::from_millis(200));
    let text = err.to_string();
    assert!(text.contains("test.leaker") && text.contains(file!()), "{text}");
    h.abort();
    let _ = h.await;
}

#[tokio::test]
async fn a_task_ending_late_but_before_the_deadline_is_not_a_leak() {
    let check = LeakCheck::start();
    task::spawn_tracked(async {
        tokio::time::sleep(Duration::from_millis(300)).await;
    });
    check.finish(Duration::from_secs(2)).await.unwrap();
}

#[tokio::test]
async fn a_task_ending_1_5s_after_finish_begins_passes_with_a_5s_deadline() {
    let check = LeakCheck::start();
    task::spawn("test.slow.shutdown", async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
    });
    check.finish(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn nested_spawns_inherit_the_check() {
    let check = LeakCheck::start();
    let outer = task::spawn("test.outer", async {
        // spawned from inside a tracked task: same check
        let inner = task::spawn("test.inner", std::future::pending::<()>());
        Some(inner)
    });
    let inner = outer.await.unwrap().unwrap();
    let err = check.finish(Duration::from_millis(50)).await.unwrap_err();
    assert_eq!(err.tasks.len(), 1);
    assert_eq!(err.tasks[0].name, Some("test.inner"));
    inner.abort();
}

#[test]
fn two_concurrent_checks_do_not_blame_each_other() {
    let leaky = std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async {
            let check = LeakCheck::start();
            let h = task::spawn("test.parallel.leak", std::future::pending::<()>());
            let r = check.finish(Duration::from_millis(500)).await;
            h.abort();
            r
        })
    });
    let clean = std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async {
            let check = LeakCheck::start();
            task::spawn("test.parallel.clean", async {
                tokio::time::sleep(Duration::from_millis(20)).await;
            });
            check.finish(Duration::from_secs(2)).await
        })
    });
    let leaky = leaky.join().unwrap().unwrap_err();
    assert!(leaky.tasks.iter().all(|t| t.name == Some("test.parallel.leak")));
    clean.join().unwrap().expect("the clean check must not see the other's leak");
}

#[test]
fn runtime_hooks_track_plain_tokio_spawn_by_site() {
    let rt = pinchpoint::probe::runtime::builder_current_thread().build().unwrap();
    rt.block_on(async {
        pinchpoint::probe::runtime::register_current();
        let check = LeakCheck::start();
        let line = line!() + 1;
        let h = tokio::spawn(std::future::pending::<()>());
        // let it be polled once
        tokio::task::yield_now().await;
        let err = check.finish(Duration::from_millis(50)).await.unwrap_err();
        assert_eq!(err.tasks.len(), 1);
        assert_eq!(err.tasks[0].site, format!("{}:{}", file!(), line));
        assert!(err.tasks[0].since_last_poll.is_some());
        // tracked spawns are not double counted by the hook
        let label = format!("{}:{}", file!(), line);
        assert_eq!(families().tasks_spawned.get([&label]).get(), 1);
        let t = task::spawn("test.hooked.named", async {});
        t.await.unwrap();
        assert_eq!(families().tasks_spawned.get(["test.hooked.named"]).get(), 1);
        // A plain spawn after a wrapped one is the hook's again.
        let after_line = line!() + 1;
        tokio::spawn(async {}).await.unwrap();
        let after = format!("{}:{}", file!(), after_line);
        assert_eq!(families().tasks_spawned.get([&after]).get(), 1);
        assert_eq!(families().tasks_finished.get([&after]).get(), 1);
        let text = pinchpoint::metrics::encode();
        assert!(text.contains("pinchpoint_runtime_poll_seconds_count"), "poll histogram");
        assert!(text.contains("pinchpoint_runtime_workers 1"));
        assert!(text.contains(&format!("pinchpoint_tasks_alive{{task=\"{label}\"}} 1")));
        h.abort();
    });
}

#[tokio::test]
async fn finished_tasks_leave_the_registry_and_counters_balance() {
    for _ in 0..100 {
        task::spawn("test.balance", async {}).await.unwrap();
    }
    let f = families();
    assert_eq!(f.tasks_spawned.get(["test.balance"]).get(), 100);
    assert_eq!(f.tasks_finished.get(["test.balance"]).get(), 100);
    let report = task::report(5);
    assert!(!report.by_task.iter().any(|g| g.task == "test.balance"));
}

#[tokio::test]
async fn leak_suspects_are_old_idle_tasks_of_a_growing_site_only() {
    // Only this test changes the threshold; other tests' tasks are short-lived.
    let mut held = vec![task::spawn("test.suspect", std::future::pending::<()>())];
    tokio::task::yield_now().await;
    task::set_leak_threshold(Duration::from_millis(10));
    // Old and never polled again, but alone and not growing: an accept loop, not a leak.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let report = task::report(50);
        let g = report.by_task.iter().find(|g| g.task == "test.suspect").expect("listed");
        assert_eq!((g.alive, g.leak_suspects), (1, 0));
        assert!(g.oldest_seconds >= 0.03);
    }
    // One more forgotten task at every look: the site grows, its old idle tasks are suspects.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let suspects = loop {
        held.push(task::spawn("test.suspect", std::future::pending::<()>()));
        tokio::time::sleep(Duration::from_millis(30)).await;
        let report = task::report(50);
        let g = report.by_task.iter().find(|g| g.task == "test.suspect").expect("listed").clone();
        if g.leak_suspects > 0 || std::time::Instant::now() > deadline {
            break g;
        }
    };
    task::set_leak_threshold(Duration::from_secs(60));
    assert!(suspects.leak_suspects >= 2 && suspects.leak_suspects <= suspects.alive, "{suspects:?}");
    for h in held {
        h.abort();
    }
}

/// The `task` label of every task series in the exposition.
fn task_labels(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("pinchpoint_tasks_spawned_total{"))
        .filter_map(|l| l.split("task=\"").nth(1)?.split('"').next().map(str::to_owned))
        .collect()
}

#[test]
fn worker_pools_go_by_their_name_and_dependency_spawn_sites_carry_no_machine_path() {
    let rt = pinchpoint::probe::runtime::builder_multi_thread().worker_threads(2).build().unwrap();
    rt.block_on(async {
        pinchpoint::probe::runtime::register_current();
        let pool = pinchpoint::probe::worker::WorkerPool::new("test.labelled.pool", 2, 4);
        pool.submit_wait(async {}).await.unwrap();
        // A dependency spawns tasks of its own: axum one per connection, hyper-util (under
        // reqwest) one per client connection.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let body = reqwest::get(format!("http://{addr}/")).await.unwrap().text().await.unwrap();
        assert_eq!(body, "ok");

        assert_eq!(families().tasks_spawned.get(["test.labelled.pool"]).get(), 2, "one series for both workers");
        let labels = task_labels(&pinchpoint::metrics::encode());
        assert!(labels.iter().any(|l| l == "test.labelled.pool"), "{labels:?}");
        assert!(
            !labels.iter().any(|l| l.contains("probe/worker.rs")),
            "no label names the pool's own spawn site: {labels:?}"
        );
        if cfg!(tokio_unstable) {
            // Hooked spawns: a dependency's site starts at its crate directory.
            assert!(labels.iter().any(|l| l.starts_with("axum-0.")), "axum's spawn site: {labels:?}");
        }
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        for l in &labels {
            assert!(!l.starts_with('/') && !l.contains(&home) && !l.contains("registry/src"), "machine path in {l:?}");
        }
        server.abort();
        pool.shutdown().await;
    });
}

#[test]
fn named_spawns_inside_a_hooked_task_are_tracked_by_the_hook_under_their_name() {
    let rt = pinchpoint::probe::runtime::builder_current_thread().build().unwrap();
    rt.block_on(async {
        // From inside a task the hooked runtime polls, `task::spawn` hands the name to the hook.
        let outer = tokio::spawn(async {
            let check = LeakCheck::start();
            let line = line!() + 1;
            let h = task::spawn("test.hooked.inner", std::future::pending::<()>());
            tokio::task::yield_now().await;
            let err = check.finish(Duration::from_millis(50)).await.unwrap_err();
            assert_eq!(err.tasks.len(), 1, "{err}");
            assert_eq!(err.tasks[0].name, Some("test.hooked.inner"));
            assert_eq!(err.tasks[0].site, format!("{}:{}", file!(), line));
            assert!(err.tasks[0].since_last_poll.is_some());
            h.abort();
            let _ = h.await;
            for _ in 0..10 {
                task::spawn("test.hooked.inner", async {}).await.unwrap();
            }
        });
        outer.await.unwrap();
        let f = families();
        assert_eq!(f.tasks_spawned.get(["test.hooked.inner"]).get(), 11);
        assert_eq!(f.tasks_finished.get(["test.hooked.inner"]).get(), 11);
        assert!(!task::report(5).by_task.iter().any(|g| g.task == "test.hooked.inner"));
    });
}

#[test]
fn hooked_tasks_beyond_the_table_are_tracked_and_released_too() {
    // More live tasks than the live-task table holds: the rest overflow into the locked map.
    const LIVE: usize = 6_000;
    let rt = pinchpoint::probe::runtime::builder_current_thread().build().unwrap();
    rt.block_on(async {
        let line = line!() + 1;
        let spawn_one = || tokio::spawn(std::future::pending::<()>());
        let label = format!("{}:{}", file!(), line);
        let handles: Vec<_> = (0..LIVE).map(|_| spawn_one()).collect();
        tokio::task::yield_now().await;
        let alive = |label: &str| task::report(0).by_task.iter().find(|g| g.task == label).map_or(0, |g| g.alive);
        assert_eq!(alive(&label), LIVE as i64);
        let text = pinchpoint::metrics::encode();
        assert!(text.contains(&format!("pinchpoint_tasks_alive{{task=\"{label}\"}} {LIVE}")), "tasks_alive");
        for h in &handles {
            h.abort();
        }
        for h in handles {
            assert!(h.await.unwrap_err().is_cancelled());
        }
        assert_eq!(alive(&label), 0);
        let f = families();
        assert_eq!(f.tasks_spawned.get([&label]).get(), LIVE as u64);
        assert_eq!(f.tasks_finished.get([&label]).get(), LIVE as u64);
    });
}
