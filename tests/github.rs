//! The GitHub client (`tollgate::github`) against the fake GitHub on
//! 127.0.0.1: every review outcome, App tokens, rate limits and the shared
//! pacing, checks, run state, and where the token may (not) go.

mod support;

use std::time::Duration;

use tokio::time::Instant;
use tollgate::api::Verdict;
use tollgate::github::{
    Auth, CommentOutcome, GitHub, GitHubConfig, GitHubError, Pace, ReviewOutcome, RunState,
    RunTarget, Turn,
};
use tollgate::policy::CheckState;

use support::github::{FakeGitHub, Fault, TEST_APP_KEY};

const TOKEN: &str = "ghp_TESTtokenTESTtokenTESTtokenTESTtok1";
const REPO: &str = "acme/web";
const ENV: &str = "production";
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn review_path(run_id: i64) -> String {
    format!("/repos/{REPO}/actions/runs/{run_id}/deployment_protection_rule")
}

fn target(run_id: i64) -> RunTarget {
    RunTarget {
        repository: REPO.into(),
        run_id,
        environment: ENV.into(),
        installation_id: None,
    }
}

fn config(fake: &FakeGitHub, auth: Auth) -> GitHubConfig {
    GitHubConfig {
        api_base: fake.url().to_string(),
        auth,
        request_timeout: Duration::from_secs(2),
        // Fast enough that pacing never shows unless a test asks for it.
        writes_per_minute: 60_000,
        writes_per_hour: 10_000_000,
        max_in_flight: 100,
    }
}

fn app_auth() -> Auth {
    Auth::App {
        app_id: 1,
        private_key_pem: TEST_APP_KEY.into(),
    }
}

fn token_client(fake: &FakeGitHub) -> GitHub {
    GitHub::new(config(fake, Auth::Token(TOKEN.into()))).expect("token client")
}

fn app_client(fake: &FakeGitHub) -> GitHub {
    GitHub::new(config(fake, app_auth())).expect("App client")
}

/// The wait GitHub asked for, kept exactly.
fn retry_after(outcome: &ReviewOutcome) -> Duration {
    match outcome {
        ReviewOutcome::Retry {
            after,
            pace: Pace::Told,
            ..
        } => *after,
        other => panic!("expected a Retry after GitHub's wait, got {other:?}"),
    }
}

/// A retry the caller backs off from by its attempt count.
fn retry_pace(outcome: &ReviewOutcome) -> Pace {
    match outcome {
        ReviewOutcome::Retry { after, pace, .. } => {
            assert_ne!(*pace, Pace::Told, "{outcome:?}");
            assert_eq!(*after, Duration::ZERO, "{outcome:?}");
            *pace
        }
        other => panic!("expected Retry, got {other:?}"),
    }
}

/// GETs of exactly `path` (e.g. `/app`, `/user`).
fn gets_of(fake: &FakeGitHub, path: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == path)
        .count()
}

/// The instant the fake received the only review POST for `run_id`.
fn review_at(fake: &FakeGitHub, run_id: i64) -> Instant {
    let reviews = fake.reviews(run_id);
    assert_eq!(reviews.len(), 1, "{reviews:?}");
    reviews[0].at
}

// ---- review outcomes ------------------------------------------------------------

#[tokio::test]
async fn review_answered_204_is_delivered_with_githubs_body_path_and_token() {
    let fake = FakeGitHub::start().await;
    let github = token_client(&fake);

    let outcome = github
        .review(&target(7), Verdict::Approve, "all checks green")
        .await;

    assert_eq!(outcome, ReviewOutcome::Delivered);
    assert_eq!(fake.accepted(7, ENV), 1);
    let seen = fake.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let post = &seen[0];
    assert_eq!(post.method, "POST");
    assert_eq!(post.path, review_path(7));
    assert_eq!(
        post.body,
        serde_json::json!({
            "environment_name": "production",
            "state": "approved",
            "comment": "all checks green",
        })
    );
    assert_eq!(
        post.authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(
        post.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    assert!(
        post.headers.contains_key("user-agent"),
        "{:?}",
        post.headers
    );
}

#[tokio::test]
async fn rejection_is_sent_as_rejected() {
    let fake = FakeGitHub::start().await;
    let github = token_client(&fake);

    let outcome = github
        .review(&target(8), Verdict::Reject, "deadline passed")
        .await;

    assert_eq!(outcome, ReviewOutcome::Delivered);
    assert_eq!(
        fake.answer(8, ENV),
        Some(("rejected".to_string(), "tollgate[bot]".to_string()))
    );
    assert_eq!(fake.reviews(8)[0].body["state"], "rejected");
}

#[tokio::test]
async fn already_reviewed_422_is_settled_by_the_approver_read_from_approvals() {
    let fake = FakeGitHub::start().await;
    fake.answer_as(9, ENV, "approved", "octocat");
    fake.answer_as(9, "staging", "rejected", "someone-else");
    let github = token_client(&fake);

    let outcome = github.review(&target(9), Verdict::Approve, "ok").await;

    assert_eq!(
        outcome,
        ReviewOutcome::AlreadySettled {
            by: Some("octocat".into())
        }
    );
    assert_eq!(fake.accepted(9, ENV), 0);
    assert_eq!(fake.reviews(9).len(), 1);
    let approvals = fake.requests_to("GET", "/actions/runs/9/approvals");
    assert_eq!(approvals.len(), 1);
    assert_eq!(
        approvals[0].path,
        format!("/repos/{REPO}/actions/runs/9/approvals")
    );
}

#[tokio::test]
async fn missing_run_404_is_gone() {
    let fake = FakeGitHub::start().await;
    fake.set_run(10, "gone", None);
    let github = token_client(&fake);

    let outcome = github.review(&target(10), Verdict::Approve, "ok").await;

    assert_eq!(outcome, ReviewOutcome::Gone);
    assert_eq!(fake.reviews(10).len(), 1);
    assert_eq!(fake.accepted(10, ENV), 0);
}

#[tokio::test]
async fn server_error_then_204_delivers_exactly_once() {
    let fake = FakeGitHub::start().await;
    fake.script("review", &[Fault::Status(500, "Server Error")]);
    let github = token_client(&fake);

    let first = github.review(&target(11), Verdict::Approve, "ok").await;
    // The controller retries after `after`.
    let second = github.review(&target(11), Verdict::Approve, "ok").await;

    // The caller backs off (from 1–2 s, see controller/backoff.rs).
    assert_eq!(retry_pace(&first), Pace::Transient);
    match &first {
        ReviewOutcome::Retry { error, .. } => assert!(error.contains("500"), "{error}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(second, ReviewOutcome::Delivered);
    assert_eq!(fake.reviews(11).len(), 2);
    assert_eq!(fake.accepted(11, ENV), 1);
}

#[tokio::test(start_paused = true)]
async fn timeout_after_the_review_landed_is_delivered_without_a_second_post() {
    let fake = FakeGitHub::start().await;
    fake.script("review", &[Fault::Hang { lands: true }]);
    let github = token_client(&fake);

    let outcome = github.review(&target(12), Verdict::Approve, "ok").await;

    assert_eq!(outcome, ReviewOutcome::Delivered);
    assert_eq!(fake.reviews(12).len(), 1);
    assert_eq!(fake.accepted(12, ENV), 1);
    assert_eq!(
        fake.requests_to("GET", "/actions/runs/12/approvals").len(),
        1
    );
    // A later retry by the controller would be told it is settled, by us.
    let again = github.review(&target(12), Verdict::Approve, "ok").await;
    assert_eq!(
        again,
        ReviewOutcome::AlreadySettled {
            by: Some("tollgate[bot]".into())
        }
    );
    assert_eq!(fake.accepted(12, ENV), 1);
}

#[tokio::test(start_paused = true)]
async fn timeout_after_someone_else_answered_is_settled_by_them_without_sending_again() {
    let fake = FakeGitHub::start().await;
    fake.script("review", &[Fault::Hang { lands: false }]);
    fake.answer_as(13, ENV, "rejected", "release-manager");
    let github = token_client(&fake);

    let first = github.review(&target(13), Verdict::Approve, "ok").await;

    // Not our review, so not delivered; but the run no longer waits on the
    // environment (`pending_deployments`): the answer is not needed.
    assert_eq!(
        first,
        ReviewOutcome::AlreadySettled {
            by: Some("release-manager".into())
        }
    );
    assert_eq!(fake.reviews(13).len(), 1);
    assert_eq!(
        fake.requests_to("GET", "/actions/runs/13/pending_deployments")
            .len(),
        1
    );
    assert_eq!(fake.accepted(13, ENV), 0);
}

#[tokio::test]
async fn a_persons_approval_in_the_history_does_not_mark_our_answer_delivered() {
    let fake = FakeGitHub::start().await;
    // A required reviewer approved the environment, and our App once answered
    // another environment of the run: neither is our answer for production.
    fake.add_review_history(18, ENV, "approved", "octocat");
    fake.add_review_history(18, "staging", "approved", "tollgate[bot]");
    fake.script("review", &[Fault::Reset { lands: false }]);
    let github = token_client(&fake);

    let first = github.review(&target(18), Verdict::Approve, "ok").await;
    let second = github.review(&target(18), Verdict::Approve, "ok").await;

    assert_eq!(retry_pace(&first), Pace::Transient);
    assert_eq!(second, ReviewOutcome::Delivered);
    assert_eq!(fake.reviews(18).len(), 2);
    assert_eq!(fake.accepted(18, ENV), 1);
    assert_eq!(
        fake.answer(18, ENV),
        Some(("approved".to_string(), "tollgate[bot]".to_string()))
    );
    // The token's own login was read to tell, from GET /user.
    assert_eq!(gets_of(&fake, "/user"), 1);
}

#[tokio::test]
async fn in_app_mode_our_review_is_the_one_by_the_apps_bot_read_once_from_get_app() {
    let fake = FakeGitHub::start().await;
    fake.set_app_slug("gatekeeper");
    // Another App answered with our state: still not ours.
    fake.add_review_history(19, ENV, "approved", "tollgate[bot]");
    fake.script(
        "review",
        &[
            Fault::Reset { lands: false },
            Fault::Reset { lands: true },
            Fault::Reset { lands: true },
        ],
    );
    let github = app_client(&fake);

    let not_landed = github.review(&target(19), Verdict::Approve, "ok").await;
    let landed = github.review(&target(19), Verdict::Approve, "ok").await;
    let other_run = github.review(&target(20), Verdict::Reject, "no").await;

    assert_eq!(retry_pace(&not_landed), Pace::Transient);
    assert_eq!(landed, ReviewOutcome::Delivered);
    assert_eq!(other_run, ReviewOutcome::Delivered);
    assert_eq!(fake.reviews(19).len(), 2);
    assert_eq!(fake.reviews(20).len(), 1);
    assert_eq!(
        fake.answer(20, ENV),
        Some(("rejected".to_string(), "gatekeeper[bot]".to_string()))
    );
    // The slug is read once (with the App's JWT) and kept.
    assert_eq!(gets_of(&fake, "/app"), 1);
    assert_eq!(gets_of(&fake, "/user"), 0);
}

#[tokio::test]
async fn without_our_own_login_an_ambiguous_failure_is_settled_by_the_waiting_environments() {
    let fake = FakeGitHub::start().await;
    fake.script("user", &[Fault::Status(502, "Bad Gateway")]);
    fake.script("review", &[Fault::Reset { lands: true }]);
    let github = token_client(&fake);

    let first = github.review(&target(21), Verdict::Approve, "ok").await;

    // Who we are could not be read: not a guess that it landed; but the run
    // no longer waits on the environment, so nothing is sent again, and the
    // history says who answered.
    assert_eq!(
        first,
        ReviewOutcome::AlreadySettled {
            by: Some("tollgate[bot]".into())
        }
    );
    assert_eq!(fake.reviews(21).len(), 1);
    assert_eq!(fake.accepted(21, ENV), 1);
    assert_eq!(gets_of(&fake, "/user"), 2, "a failed read is not kept");
}

#[tokio::test]
async fn connection_reset_before_the_review_landed_is_retried_and_lands_once() {
    let fake = FakeGitHub::start().await;
    fake.script("review", &[Fault::Reset { lands: false }]);
    let github = token_client(&fake);

    let first = github.review(&target(14), Verdict::Approve, "ok").await;
    let second = github.review(&target(14), Verdict::Approve, "ok").await;

    assert_eq!(retry_pace(&first), Pace::Transient);
    assert_eq!(
        fake.requests_to("GET", "/actions/runs/14/approvals").len(),
        1
    );
    assert_eq!(second, ReviewOutcome::Delivered);
    assert_eq!(fake.reviews(14).len(), 2);
    assert_eq!(fake.accepted(14, ENV), 1);
}

#[tokio::test]
async fn connection_reset_after_the_review_landed_is_delivered_without_a_second_post() {
    let fake = FakeGitHub::start().await;
    fake.script("review", &[Fault::Reset { lands: true }]);
    let github = token_client(&fake);

    let outcome = github.review(&target(15), Verdict::Approve, "ok").await;

    assert_eq!(outcome, ReviewOutcome::Delivered);
    assert_eq!(fake.reviews(15).len(), 1);
    assert_eq!(fake.accepted(15, ENV), 1);
}

#[tokio::test]
async fn missing_permission_403_is_denied_naming_the_permission() {
    let fake = FakeGitHub::start().await;
    fake.script(
        "review",
        &[Fault::Status(403, "Resource not accessible by integration")],
    );
    let github = token_client(&fake);

    let outcome = github.review(&target(16), Verdict::Approve, "ok").await;

    match outcome {
        ReviewOutcome::Denied { why } => {
            assert!(
                why.contains("the App lacks Deployments: write on acme/web"),
                "{why}"
            );
            assert!(
                why.contains("Resource not accessible by integration"),
                "{why}"
            );
        }
        other => panic!("expected Denied, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_repository_is_denied_without_a_request() {
    let fake = FakeGitHub::start().await;
    let github = token_client(&fake);
    let mut bad = target(17);
    bad.repository = "acme".into();

    let outcome = github.review(&bad, Verdict::Approve, "ok").await;

    assert!(
        matches!(outcome, ReviewOutcome::Denied { .. }),
        "{outcome:?}"
    );
    assert!(fake.requests().is_empty());
}

// ---- App authentication -----------------------------------------------------------

#[tokio::test]
async fn app_mode_looks_up_the_installation_once_and_reuses_its_token() {
    let fake = FakeGitHub::start().await;
    let github = app_client(&fake);

    let first = github.review(&target(20), Verdict::Approve, "ok").await;
    let second = github.review(&target(21), Verdict::Approve, "ok").await;

    assert_eq!(first, ReviewOutcome::Delivered);
    assert_eq!(second, ReviewOutcome::Delivered);
    assert_eq!(fake.tokens_minted(), 1);
    assert_eq!(
        fake.requests_to("GET", &format!("/repos/{REPO}/installation"))
            .len(),
        1
    );
    let mints = fake.requests_to("POST", "/app/installations/42/access_tokens");
    assert_eq!(mints.len(), 1);
    // The installation lookup and the mint carry the App's JWT, the review the token.
    let jwt = mints[0].authorization.clone().expect("JWT on the mint");
    assert!(jwt.starts_with("Bearer ey"), "{jwt}");
    for run in [20, 21] {
        assert_eq!(
            fake.reviews(run)[0].authorization.as_deref(),
            Some("Bearer ghs_fake1_i42")
        );
    }
}

#[tokio::test]
async fn known_installation_id_skips_the_lookup() {
    let fake = FakeGitHub::start().await;
    let github = app_client(&fake);
    let mut t = target(22);
    t.installation_id = Some(42);

    let outcome = github.review(&t, Verdict::Approve, "ok").await;

    assert_eq!(outcome, ReviewOutcome::Delivered);
    assert!(fake.requests_to("GET", "/installation").is_empty());
    assert_eq!(fake.tokens_minted(), 1);
}

#[tokio::test]
async fn expired_installation_token_401_is_refreshed_and_retried_once() {
    let fake = FakeGitHub::start().await;
    fake.script("review", &[Fault::Unauthorized]);
    let github = app_client(&fake);

    let outcome = github.review(&target(23), Verdict::Approve, "ok").await;

    assert_eq!(outcome, ReviewOutcome::Delivered);
    assert_eq!(fake.tokens_minted(), 2);
    let reviews = fake.reviews(23);
    assert_eq!(reviews.len(), 2);
    assert_eq!(reviews[0].status, 401);
    assert_eq!(
        reviews[0].authorization.as_deref(),
        Some("Bearer ghs_fake1_i42")
    );
    assert_eq!(reviews[1].status, 204);
    assert_eq!(
        reviews[1].authorization.as_deref(),
        Some("Bearer ghs_fake2_i42")
    );
    assert_eq!(fake.accepted(23, ENV), 1);
}

#[tokio::test]
async fn a_second_401_with_a_fresh_token_is_retried_later_with_advice() {
    let fake = FakeGitHub::start().await;
    fake.script("review", &[Fault::Unauthorized, Fault::Unauthorized]);
    let github = app_client(&fake);

    let outcome = github.review(&target(24), Verdict::Approve, "ok").await;

    // Only a person can fix it: the slow backoff (to 30 minutes).
    assert_eq!(retry_pace(&outcome), Pace::Refused);
    match &outcome {
        ReviewOutcome::Retry { error, .. } => assert!(
            error.contains("check the App ID and private key"),
            "{error}"
        ),
        other => panic!("expected Retry, got {other:?}"),
    }
    assert_eq!(fake.tokens_minted(), 2);
    assert_eq!(fake.reviews(24).len(), 2);
    assert_eq!(fake.accepted(24, ENV), 0);
}

#[tokio::test]
async fn token_mode_401_is_not_retried() {
    let fake = FakeGitHub::start().await;
    fake.script("review", &[Fault::Unauthorized]);
    let github = token_client(&fake);

    let outcome = github.review(&target(25), Verdict::Approve, "ok").await;

    assert_eq!(retry_pace(&outcome), Pace::Refused);
    assert_eq!(fake.reviews(25).len(), 1);
    assert_eq!(fake.tokens_minted(), 0);
}

#[tokio::test]
async fn failing_token_mint_is_retried_later_without_posting() {
    let fake = FakeGitHub::start().await;
    fake.script("token", &[Fault::Status(502, "Bad Gateway")]);
    let github = app_client(&fake);

    let first = github.review(&target(26), Verdict::Approve, "ok").await;
    let second = github.review(&target(26), Verdict::Approve, "ok").await;

    assert_eq!(retry_pace(&first), Pace::Transient);
    assert_eq!(second, ReviewOutcome::Delivered);
    assert_eq!(fake.reviews(26).len(), 1);
    assert_eq!(fake.tokens_minted(), 1);
}

// ---- rate limits and the shared limiter -------------------------------------------

#[tokio::test(start_paused = true)]
async fn secondary_limit_with_retry_after_pauses_every_write_until_then() {
    let fake = FakeGitHub::start().await;
    fake.script(
        "review",
        &[Fault::SecondaryLimit {
            retry_after: Some(90),
        }],
    );
    let github = token_client(&fake);

    let limited = github.review(&target(30), Verdict::Approve, "ok").await;
    let next = github.review(&target(31), Verdict::Approve, "ok").await;

    assert_eq!(retry_after(&limited), Duration::from_secs(90));
    assert_eq!(next, ReviewOutcome::Delivered);
    let waited = review_at(&fake, 31) - review_at(&fake, 30);
    assert!(
        (Duration::from_secs(90)..Duration::from_secs(91)).contains(&waited),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn secondary_limit_without_retry_after_waits_a_minute_then_doubles() {
    let fake = FakeGitHub::start().await;
    fake.script(
        "review",
        &[
            Fault::SecondaryLimit { retry_after: None },
            Fault::SecondaryLimit { retry_after: None },
        ],
    );
    let github = token_client(&fake);

    let first = github.review(&target(32), Verdict::Approve, "ok").await;
    let second = github.review(&target(33), Verdict::Approve, "ok").await;
    let third = github.review(&target(34), Verdict::Approve, "ok").await;

    assert_eq!(retry_after(&first), Duration::from_secs(60));
    assert_eq!(retry_after(&second), Duration::from_secs(120));
    assert_eq!(third, ReviewOutcome::Delivered);
    let one = review_at(&fake, 33) - review_at(&fake, 32);
    let two = review_at(&fake, 34) - review_at(&fake, 33);
    assert!(
        (Duration::from_secs(60)..Duration::from_secs(61)).contains(&one),
        "{one:?}"
    );
    assert!(
        (Duration::from_secs(120)..Duration::from_secs(121)).contains(&two),
        "{two:?}"
    );

    // A success forgets the strikes: the next limit is a minute again.
    fake.script("review", &[Fault::SecondaryLimit { retry_after: None }]);
    let fourth = github.review(&target(35), Verdict::Approve, "ok").await;
    assert_eq!(retry_after(&fourth), Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn too_many_requests_429_honours_retry_after_for_the_next_write() {
    let fake = FakeGitHub::start().await;
    fake.script("review", &[Fault::RetryAfter(30)]);
    let github = token_client(&fake);

    let limited = github.review(&target(36), Verdict::Approve, "ok").await;
    let next = github.review(&target(37), Verdict::Approve, "ok").await;

    assert_eq!(retry_after(&limited), Duration::from_secs(30));
    assert_eq!(next, ReviewOutcome::Delivered);
    let waited = review_at(&fake, 37) - review_at(&fake, 36);
    assert!(
        (Duration::from_secs(30)..Duration::from_secs(31)).contains(&waited),
        "{waited:?}"
    );
    assert_eq!(fake.accepted(36, ENV), 0);
}

#[tokio::test(start_paused = true)]
async fn spent_primary_budget_sends_nothing_until_the_reset() {
    let fake = FakeGitHub::start().await;
    fake.script("review", &[Fault::PrimaryExhausted { reset_in: 120 }]);
    let github = token_client(&fake);

    let limited = github.review(&target(38), Verdict::Approve, "ok").await;
    let next = github.review(&target(39), Verdict::Approve, "ok").await;

    // The reset is a wall-clock epoch second: a second boundary may pass in between.
    let after = retry_after(&limited);
    assert!(
        (Duration::from_secs(119)..=Duration::from_secs(120)).contains(&after),
        "{after:?}"
    );
    assert_eq!(next, ReviewOutcome::Delivered);
    let waited = review_at(&fake, 39) - review_at(&fake, 38);
    assert!(
        (after..after + Duration::from_secs(1)).contains(&waited),
        "{waited:?} vs {after:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn thousand_queued_reviews_drain_in_order_within_the_configured_rate() {
    const N: i64 = 1000;
    const PER_MINUTE: usize = 80;
    let fake = FakeGitHub::start().await;
    let github = GitHub::new(GitHubConfig {
        writes_per_minute: PER_MINUTE as u32,
        ..config(&fake, Auth::Token(TOKEN.into()))
    })
    .expect("client");

    let tasks: Vec<_> = (1..=N)
        .map(|run| {
            let github = github.clone();
            tokio::spawn(async move { github.review(&target(run), Verdict::Approve, "ok").await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("review task"), ReviewOutcome::Delivered);
    }

    let posts = fake.requests_to("POST", "/deployment_protection_rule");
    assert_eq!(posts.len(), N as usize);
    let order: Vec<String> = posts.iter().map(|p| p.path.clone()).collect();
    let expected: Vec<String> = (1..=N).map(review_path).collect();
    assert_eq!(
        order, expected,
        "reviews did not arrive in the order queued"
    );
    for window in posts.windows(PER_MINUTE + 1) {
        let span = window[PER_MINUTE].at - window[0].at;
        assert!(
            span >= Duration::from_secs(60),
            "{} writes within {span:?}",
            PER_MINUTE + 1
        );
    }
    // And not slower than the rate allows: 1,000 at 80 a minute is 12.5 minutes.
    let total = posts[posts.len() - 1].at - posts[0].at;
    assert!(total < Duration::from_secs(750), "{total:?}");
    assert!((1..=N).all(|run| fake.accepted(run, ENV) == 1));
}

// ---- status reports ----------------------------------------------------------------

/// A reconciler's way with a write: ask for the turn, come back when told,
/// write when it is due.
async fn write_when_due(github: GitHub, target: RunTarget, answer: bool, mut turn: Turn) {
    while let Turn::Later(after) = turn {
        tokio::time::sleep(after).await;
        turn = if answer {
            github.write_turn(&target)
        } else {
            github.report_turn(&target)
        };
    }
    if answer {
        let outcome = github.review(&target, Verdict::Approve, "ok").await;
        assert_eq!(outcome, ReviewOutcome::Delivered);
    } else {
        let outcome = github.comment(&target, "held").await.expect("report");
        assert_eq!(outcome, CommentOutcome::Posted);
    }
}

#[tokio::test(start_paused = true)]
async fn with_a_small_budget_queued_reports_go_out_only_after_every_pending_answer() {
    let fake = FakeGitHub::start().await;
    let github = GitHub::new(GitHubConfig {
        writes_per_minute: 60,
        ..config(&fake, Auth::Token(TOKEN.into()))
    })
    .expect("client");
    // Runs 1–4 wait and report why; the first report finds the budget free.
    assert_eq!(github.report_turn(&target(1)), Turn::Now);
    write_when_due(github.clone(), target(1), false, Turn::Now).await;
    let mut writers = Vec::new();
    for run in 2..=4 {
        let turn = github.report_turn(&target(run));
        assert!(matches!(turn, Turn::Later(_)), "run {run}: {turn:?}");
        writers.push(tokio::spawn(write_when_due(
            github.clone(),
            target(run),
            false,
            turn,
        )));
    }
    // Then runs 11–13 are decided: their answers are asked for after the reports.
    for run in 11..=13 {
        let turn = github.write_turn(&target(run));
        writers.push(tokio::spawn(write_when_due(
            github.clone(),
            target(run),
            true,
            turn,
        )));
    }
    assert_eq!(github.reports_queued(), 3);
    for w in writers {
        w.await.expect("writer");
    }

    let posts = fake.requests_to("POST", "/deployment_protection_rule");
    let order: Vec<(i64, bool)> = posts
        .iter()
        .map(|p| {
            let run = p
                .path
                .split('/')
                .nth(6)
                .and_then(|r| r.parse().ok())
                .expect("run id");
            (run, p.body.get("state").is_some())
        })
        .collect();
    assert_eq!(
        order,
        [
            (1, false),
            (11, true),
            (12, true),
            (13, true),
            (2, false),
            (3, false),
            (4, false)
        ],
        "answers first, then the reports in the order they queued"
    );
    // Still one write a second, reports included.
    for pair in posts.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(950),
            "{:?}",
            pair[1].at - pair[0].at
        );
    }
    assert_eq!((github.reports_queued(), github.reports_dropped()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_decided_runs_waiting_report_is_dropped_for_its_answer() {
    let fake = FakeGitHub::start().await;
    let github = GitHub::new(GitHubConfig {
        writes_per_minute: 60,
        ..config(&fake, Auth::Token(TOKEN.into()))
    })
    .expect("client");
    assert_eq!(github.write_turn(&target(1)), Turn::Now);
    // Run 2's report waits behind run 1's answer; asked again, it keeps one place.
    assert_eq!(
        github.report_turn(&target(2)),
        Turn::Later(Duration::from_secs(1))
    );
    assert_eq!(
        github.report_turn(&target(2)),
        Turn::Later(Duration::from_secs(1))
    );
    assert_eq!(github.reports_queued(), 1);
    // Run 2 is decided before its report went out: the answer replaces it.
    assert_eq!(
        github.write_turn(&target(2)),
        Turn::Later(Duration::from_secs(1))
    );
    assert_eq!((github.reports_queued(), github.reports_dropped()), (0, 1));
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn status_report_is_a_comment_without_a_state() {
    let fake = FakeGitHub::start().await;
    let github = token_client(&fake);

    let posted = github
        .comment(&target(40), "waiting for the change window")
        .await
        .expect("comment");

    assert_eq!(posted, CommentOutcome::Posted);
    assert_eq!(fake.comments(40, ENV), 1);
    assert!(fake.reviews(40).is_empty());
    let post = &fake.requests_to("POST", &review_path(40))[0];
    assert_eq!(
        post.body,
        serde_json::json!({
            "environment_name": "production",
            "comment": "waiting for the change window",
        })
    );
    assert_eq!(fake.answer(40, ENV), None);
}

#[tokio::test]
async fn status_report_on_an_answered_or_gone_request_is_not_pending() {
    let fake = FakeGitHub::start().await;
    fake.answer_as(41, ENV, "approved", "octocat");
    fake.set_run(42, "gone", None);
    let github = token_client(&fake);

    let answered = github.comment(&target(41), "held").await.expect("comment");
    let gone = github.comment(&target(42), "held").await.expect("comment");

    assert_eq!(answered, CommentOutcome::NotPending);
    assert_eq!(gone, CommentOutcome::NotPending);
    assert_eq!(fake.comments(41, ENV), 0);
}

#[tokio::test(start_paused = true)]
async fn status_report_hitting_a_limit_is_a_transient_error_that_pauses_writes() {
    let fake = FakeGitHub::start().await;
    fake.script("review", &[Fault::RetryAfter(45)]);
    let github = token_client(&fake);

    let error = github.comment(&target(43), "held").await.unwrap_err();
    let next = github.review(&target(44), Verdict::Approve, "ok").await;

    assert!(
        matches!(error, GitHubError::RateLimited { after, .. } if after == Duration::from_secs(45)),
        "{error:?}"
    );
    assert!(error.is_transient());
    assert_eq!(next, ReviewOutcome::Delivered);
    let comment_at = fake.requests_to("POST", &review_path(43))[0].at;
    let waited = review_at(&fake, 44) - comment_at;
    assert!(
        (Duration::from_secs(45)..Duration::from_secs(46)).contains(&waited),
        "{waited:?}"
    );
}

// ---- checks and run state -----------------------------------------------------------

#[tokio::test]
async fn checks_combine_check_runs_and_statuses_per_required_name() {
    let fake = FakeGitHub::start().await;
    // A failed build, re-run and now green: the latest run wins.
    fake.add_check_run(SHA, "build", "completed", Some("failure"));
    fake.add_check_run(SHA, "build", "completed", Some("success"));
    // A green test re-run that is still in progress: pending again.
    fake.add_check_run(SHA, "test", "completed", Some("success"));
    fake.add_check_run(SHA, "test", "in_progress", None);
    fake.add_check_run(SHA, "lint", "completed", Some("skipped"));
    fake.add_check_run(SHA, "e2e", "completed", Some("timed_out"));
    // A name reported both as a check run and as a status: a failure in either fails.
    fake.add_check_run(SHA, "security", "completed", Some("success"));
    fake.add_status(SHA, "security", "failure");
    fake.add_status(SHA, "ci/legacy", "success");
    fake.add_status(SHA, "deploy/preview", "pending");
    // A status updated later: the latest per context counts.
    fake.add_status(SHA, "coverage", "error");
    fake.add_status(SHA, "coverage", "success");
    let github = token_client(&fake);
    let names: Vec<String> = [
        "build",
        "test",
        "lint",
        "e2e",
        "security",
        "ci/legacy",
        "deploy/preview",
        "coverage",
        "never-reported",
    ]
    .map(String::from)
    .to_vec();

    let facts = github.commit_checks(REPO, None, SHA).await.expect("checks");
    let results =
        tollgate::policy::required_checks(&names, facts.run_facts(), facts.status_facts());

    let expected = [
        ("build", CheckState::Success),
        ("test", CheckState::Pending),
        ("lint", CheckState::Success),
        ("e2e", CheckState::Failure),
        ("security", CheckState::Failure),
        ("ci/legacy", CheckState::Success),
        ("deploy/preview", CheckState::Pending),
        ("coverage", CheckState::Success),
        ("never-reported", CheckState::Pending),
    ]
    .map(|(n, s)| (n.to_string(), s))
    .into_iter()
    .collect();
    assert_eq!(results, expected);
    assert_eq!(
        fake.requests_to("GET", &format!("/repos/{REPO}/commits/{SHA}/check-runs"))
            .len(),
        1
    );
    assert_eq!(
        fake.requests_to("GET", &format!("/repos/{REPO}/commits/{SHA}/status"))
            .len(),
        1
    );
}

#[tokio::test]
async fn checks_failure_is_an_error_not_a_verdict() {
    let fake = FakeGitHub::start().await;
    fake.script(
        "checks",
        &[Fault::Status(403, "Resource not accessible by integration")],
    );
    let github = token_client(&fake);

    let error = github.commit_checks(REPO, None, SHA).await.unwrap_err();

    assert!(
        matches!(error, GitHubError::Status { status: 403, .. }),
        "{error:?}"
    );
    assert!(!error.is_transient());
}

#[tokio::test]
async fn run_state_is_waiting_completed_cancelled_or_gone() {
    let fake = FakeGitHub::start().await;
    fake.set_run(51, "completed", Some("success"));
    fake.set_run(52, "completed", Some("cancelled"));
    fake.set_run(53, "gone", None);
    fake.set_run(54, "completed", Some("failure"));
    fake.set_run_head(50, "ABCDEF0123456789ABCDEF0123456789ABCDEF01");
    let github = token_client(&fake);

    let states = [
        github.run_state(REPO, None, 50).await.expect("run 50"),
        github.run_state(REPO, None, 51).await.expect("run 51"),
        github.run_state(REPO, None, 52).await.expect("run 52"),
        github.run_state(REPO, None, 53).await.expect("run 53"),
        github.run_state(REPO, None, 54).await.expect("run 54"),
    ];

    assert_eq!(
        states,
        [
            RunState::Waiting {
                head_sha: Some("abcdef0123456789abcdef0123456789abcdef01".into())
            },
            RunState::Completed {
                conclusion: "success".into()
            },
            RunState::Cancelled,
            RunState::Gone,
            RunState::Completed {
                conclusion: "failure".into()
            },
        ]
    );
    assert_eq!(
        fake.requests_to("GET", "/actions/runs/")
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>(),
        (50..=54)
            .map(|r| format!("/repos/{REPO}/actions/runs/{r}"))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(start_paused = true)]
async fn run_state_server_error_and_timeout_are_transient() {
    let fake = FakeGitHub::start().await;
    fake.script(
        "run",
        &[
            Fault::Status(503, "Service Unavailable"),
            Fault::Hang { lands: true },
        ],
    );
    let github = token_client(&fake);

    let unavailable = github.run_state(REPO, None, 55).await.unwrap_err();
    let timed_out = github.run_state(REPO, None, 55).await.unwrap_err();

    assert!(unavailable.is_transient(), "{unavailable:?}");
    assert!(
        matches!(timed_out, GitHubError::Transport { .. }),
        "{timed_out:?}"
    );
    assert!(timed_out.is_transient());
}

// ---- where the token goes ------------------------------------------------------------

#[tokio::test]
async fn callback_url_on_another_host_is_refused_before_any_request() {
    let fake = FakeGitHub::start().await;
    let elsewhere = FakeGitHub::start().await;
    let github = app_client(&fake);
    let base = fake.url().to_string();

    let foreign = format!(
        "{}/repos/acme/web/actions/runs/42/deployment_protection_rule",
        elsewhere.url()
    );
    let error = github.callback_run_id(&foreign, REPO).unwrap_err();

    assert!(
        matches!(error, GitHubError::ForeignCallback { .. }),
        "{error:?}"
    );
    assert!(!error.is_transient());
    for refused in [
        "https://evil.example/repos/acme/web/actions/runs/42/deployment_protection_rule"
            .to_string(),
        format!("{base}.evil.example/repos/acme/web/actions/runs/42/deployment_protection_rule"),
        format!("{base}@evil.example/repos/acme/web/actions/runs/42/deployment_protection_rule"),
        format!("{base}/repos/acme/other/actions/runs/42/deployment_protection_rule"),
        format!("{base}/repos/acme/web/actions/runs/42/approve"),
        format!("{base}/repos/acme/web/actions/runs/4x2/deployment_protection_rule"),
        format!("{base}/repos/acme/web/actions/runs/0/deployment_protection_rule"),
        format!("{base}/repos/acme/web/actions/runs/42/deployment_protection_rule?x=1"),
        format!("{base}/x/repos/acme/web/actions/runs/42/deployment_protection_rule"),
        base.replace("http://", "https://")
            + "/repos/acme/web/actions/runs/42/deployment_protection_rule",
    ] {
        assert!(
            github.callback_run_id(&refused, REPO).is_err(),
            "{refused} accepted"
        );
    }
    assert_eq!(
        github
            .callback_run_id(
                &format!("{base}/repos/acme/web/actions/runs/42/deployment_protection_rule"),
                REPO
            )
            .expect("the review URL on the base"),
        42
    );
    assert!(fake.requests().is_empty());
    assert!(elsewhere.requests().is_empty());
}

#[tokio::test]
async fn the_token_never_goes_to_a_host_other_than_the_configured_base() {
    let fake = FakeGitHub::start().await;
    let elsewhere = FakeGitHub::start().await;
    // GitHub (or something pretending to be it) redirects a review elsewhere.
    fake.script(
        "review",
        &[Fault::Redirect(format!(
            "{}{}",
            elsewhere.url(),
            review_path(60)
        ))],
    );
    fake.add_delivery(
        1,
        "deployment_protection_rule",
        500,
        serde_json::json!({"action": "requested"}),
    );
    let github = app_client(&fake);

    let redirected = github.review(&target(60), Verdict::Approve, "ok").await;
    let delivered = github.review(&target(61), Verdict::Approve, "ok").await;
    let _ = github.comment(&target(61), "held").await;
    let _ = github.commit_checks(REPO, None, SHA).await;
    let _ = github.run_state(REPO, None, 61).await;
    let _ = github
        .failed_deliveries(jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1))
        .await;
    let _ = github.delivery_payload(1).await;
    let _ = github.redeliver(1).await;
    let callback = format!(
        "{}/repos/acme/web/actions/runs/60/deployment_protection_rule",
        elsewhere.url()
    );
    assert!(github.callback_run_id(&callback, REPO).is_err());

    assert!(
        !matches!(redirected, ReviewOutcome::Delivered),
        "{redirected:?}"
    );
    assert_eq!(delivered, ReviewOutcome::Delivered);
    assert!(
        elsewhere.requests().is_empty(),
        "{:?}",
        elsewhere.requests()
    );
    let seen = fake.requests();
    assert!(seen.len() >= 10, "{seen:?}");
    assert!(seen.iter().all(|r| r.authorization.is_some()), "{seen:?}");
    assert_eq!(fake.accepted(60, ENV), 0);
}

#[tokio::test]
async fn no_token_or_key_in_debug_output_or_errors() {
    let fake = FakeGitHub::start().await;
    // GitHub echoing a token in an error message must not carry it into ours.
    fake.script(
        "review",
        &[Fault::Status(
            500,
            "upstream saw Authorization: Bearer ghs_fake1 (oops)",
        )],
    );
    fake.script(
        "run",
        &[Fault::Status(502, "proxy rejected token ghs_fake1")],
    );
    let token_config = config(&fake, Auth::Token(TOKEN.into()));
    let app_config = config(&fake, app_auth());
    let app = GitHub::new(app_config.clone()).expect("App client");
    let token = GitHub::new(token_config.clone()).expect("token client");

    let retried = app.review(&target(70), Verdict::Approve, "ok").await;
    let run_error = app.run_state(REPO, None, 70).await.unwrap_err();
    fake.script("review", &[Fault::Unauthorized]);
    let unauthorized = token.review(&target(71), Verdict::Approve, "ok").await;
    let bad_key = GitHub::new(GitHubConfig {
        auth: Auth::App {
            app_id: 1,
            private_key_pem: "-----BEGIN RSA PRIVATE KEY-----\nnot-a-key-SECRETBYTES\n-----END RSA PRIVATE KEY-----\n".into(),
        },
        ..config(&fake, Auth::Token(TOKEN.into()))
    })
    .unwrap_err();

    assert_eq!(fake.tokens_minted(), 1);
    assert!(
        matches!(retried, ReviewOutcome::Retry { .. }),
        "{retried:?}"
    );
    let key_line = TEST_APP_KEY.lines().nth(1).expect("the PEM has a body");
    let texts = [
        format!("{:?}", Auth::Token(TOKEN.into())),
        format!("{:?}", app_auth()),
        format!("{token_config:?}"),
        format!("{app_config:?}"),
        format!("{app:?}"),
        format!("{token:?}"),
        format!("{retried:?}"),
        format!("{unauthorized:?}"),
        format!("{run_error}"),
        format!("{run_error:?}"),
        format!("{bad_key}"),
        format!("{bad_key:?}"),
    ];
    for text in &texts {
        for secret in [
            TOKEN,
            "ghs_fake1",
            key_line,
            "SECRETBYTES",
            "PRIVATE KEY-----",
        ] {
            assert!(!text.contains(secret), "{secret:?} leaked in {text}");
        }
    }
    assert!(texts[0].contains("redacted"), "{}", texts[0]);
    assert!(texts[1].contains("app_id: 1"), "{}", texts[1]);
    assert!(format!("{retried:?}").contains("<redacted>"), "{retried:?}");
    assert!(run_error.to_string().contains("<redacted>"), "{run_error}");
}

#[tokio::test]
async fn unusable_configuration_fails_at_start_up() {
    for base in ["not a url", "ftp://example.com", "/relative"] {
        let error = GitHub::new(GitHubConfig {
            api_base: base.into(),
            ..GitHubConfig::default()
        })
        .unwrap_err();
        assert!(
            matches!(error, GitHubError::BaseUrl { .. }),
            "{base}: {error:?}"
        );
    }
    let github = GitHub::new(GitHubConfig {
        api_base: "https://ghe.example/api/v3/".into(),
        ..GitHubConfig::default()
    })
    .expect("GHES base");
    assert_eq!(github.api_base(), "https://ghe.example/api/v3");
    assert!(!github.is_app());
}

// ---- GitHub as documented: limits, invalid requests, installations ----------------

#[tokio::test(start_paused = true)]
async fn six_hundred_writes_in_a_burst_stay_within_80_a_minute_and_500_an_hour() {
    const N: i64 = 600;
    let fake = FakeGitHub::start().await;
    let github = GitHub::new(GitHubConfig {
        writes_per_minute: 80,
        writes_per_hour: 500,
        ..config(&fake, Auth::Token(TOKEN.into()))
    })
    .expect("client");

    let tasks: Vec<_> = (1..=N)
        .map(|run| {
            let github = github.clone();
            tokio::spawn(async move { github.review(&target(run), Verdict::Approve, "ok").await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("review task"), ReviewOutcome::Delivered);
    }

    let posts = fake.requests_to("POST", "/deployment_protection_rule");
    assert_eq!(posts.len(), N as usize);
    for window in posts.windows(81) {
        let span = window[80].at - window[0].at;
        assert!(span >= Duration::from_secs(60), "81 writes within {span:?}");
    }
    for window in posts.windows(501) {
        let span = window[500].at - window[0].at;
        assert!(
            span >= Duration::from_secs(3600),
            "501 writes within {span:?}"
        );
    }
    // As fast as both allow: the 501st an hour after the first, the rest at 80 a minute.
    let total = posts[posts.len() - 1].at - posts[0].at;
    assert!(total < Duration::from_secs(3600 + 90), "{total:?}");
    assert_eq!(
        github.write_budget(),
        [("minute", 0), ("hour", 0)],
        "right after the burst both windows are spent"
    );
}

#[tokio::test(start_paused = true)]
async fn a_403_rate_limit_on_a_read_is_honoured_by_every_call() {
    let fake = FakeGitHub::start().await;
    fake.script("run", &[Fault::PrimaryExhausted { reset_in: 120 }]);
    let github = token_client(&fake);

    let first = github.run_state(REPO, None, 50).await;
    assert!(
        matches!(first, Err(GitHubError::RateLimited { .. })),
        "{first:?}"
    );
    // Until the reset, nothing goes out: neither reads nor writes.
    let read = github.run_state(REPO, None, 50).await;
    assert!(
        matches!(read, Err(GitHubError::RateLimited { .. })),
        "{read:?}"
    );
    assert_eq!(fake.requests().len(), 1, "{:?}", fake.requests());
    assert_eq!(github.rate_limit_pauses(), 1);
    // A write waits in the pacing queue until the reset, then goes.
    let limited_at = fake.requests()[0].at;
    assert_eq!(
        github.review(&target(50), Verdict::Approve, "ok").await,
        ReviewOutcome::Delivered
    );
    let waited = review_at(&fake, 50) - limited_at;
    assert!(waited >= Duration::from_secs(119), "{waited:?}");
    assert!(matches!(
        github.run_state(REPO, None, 50).await,
        Ok(RunState::Waiting { .. })
    ));
}

#[tokio::test]
async fn an_unknown_422_is_invalid_while_the_run_still_waits_and_settled_when_it_does_not() {
    let fake = FakeGitHub::start().await;
    let github = token_client(&fake);
    fake.script(
        "review",
        &[
            Fault::Status(422, "Validation Failed: environment_name is not valid"),
            Fault::Status(422, "Validation Failed: environment_name is not valid"),
        ],
    );

    let outcome = github.review(&target(51), Verdict::Approve, "ok").await;
    assert_eq!(
        outcome,
        ReviewOutcome::Invalid {
            status: 422,
            message: "Validation Failed: environment_name is not valid".into()
        }
    );
    assert_eq!(fake.reviews(51).len(), 1);
    assert_eq!(
        fake.requests_to("GET", "/actions/runs/51/pending_deployments")
            .len(),
        1
    );

    // Someone answered the run meanwhile: the same 422 means nothing is needed.
    fake.answer_as(52, ENV, "approved", "octocat");
    let outcome = github.review(&target(52), Verdict::Approve, "ok").await;
    assert_eq!(
        outcome,
        ReviewOutcome::AlreadySettled {
            by: Some("octocat".into())
        }
    );
}

#[tokio::test]
async fn reports_and_answers_longer_than_1024_characters_are_cut_not_refused() {
    let fake = FakeGitHub::start().await;
    let github = token_client(&fake);
    let long = "x".repeat(3000);

    assert_eq!(
        github.comment(&target(53), &long).await.expect("report"),
        CommentOutcome::Posted
    );
    let sent = fake.requests_to("POST", "/runs/53/deployment_protection_rule");
    let comment = sent[0].body["comment"].as_str().expect("comment");
    assert_eq!(comment.chars().count(), 1024);
    assert!(comment.ends_with(" …"), "{comment}");

    // GitHub refuses an 11th report on a deployment as invalid: an error
    // the caller must not retry.
    for _ in 0..9 {
        github.comment(&target(53), "held").await.expect("report");
    }
    let eleventh = github.comment(&target(53), "held").await;
    assert!(
        matches!(&eleventh, Err(e) if e.is_invalid()),
        "{eleventh:?}"
    );
}

#[tokio::test]
async fn a_reinstall_with_a_new_installation_id_still_delivers() {
    let fake = FakeGitHub::start().await;
    let github = app_client(&fake);
    assert_eq!(
        github.review(&target(54), Verdict::Approve, "ok").await,
        ReviewOutcome::Delivered
    );
    // The App is reinstalled: installation 42 is gone (its token answers 401,
    // a mint 404); the repository now has installation 77.
    fake.reinstall(77);

    let outcome = github.review(&target(55), Verdict::Approve, "ok").await;
    assert_eq!(outcome, ReviewOutcome::Delivered);
    assert_eq!(fake.accepted(55, ENV), 1);
    let reviews = fake.reviews(55);
    assert_eq!(
        reviews.last().and_then(|r| r.authorization.as_deref()),
        Some("Bearer ghs_fake2_i77"),
        "{reviews:?}"
    );
    assert_eq!(
        fake.requests_to("GET", &format!("/repos/{REPO}/installation"))
            .len(),
        2,
        "looked up again once"
    );

    // A webhook's installation id from before the reinstall: one mint refused, then the new one.
    let mut stale = target(56);
    stale.installation_id = Some(42);
    assert_eq!(
        github.review(&stale, Verdict::Approve, "ok").await,
        ReviewOutcome::Delivered
    );
}

#[tokio::test]
async fn every_call_sends_githubs_media_type_and_api_version() {
    let fake = FakeGitHub::start().await;
    let github = app_client(&fake);
    github.review(&target(57), Verdict::Approve, "ok").await;
    let _ = github.run_state(REPO, None, 57).await;
    let requests = fake.requests();
    assert!(requests.len() >= 4, "{requests:?}");
    for r in requests {
        assert_eq!(
            r.headers.get("accept").and_then(|v| v.to_str().ok()),
            Some("application/vnd.github+json"),
            "{} {}",
            r.method,
            r.path
        );
        assert_eq!(
            r.headers
                .get("x-github-api-version")
                .and_then(|v| v.to_str().ok()),
            Some("2022-11-28")
        );
    }
}

#[tokio::test]
async fn the_review_history_and_waiting_environments_match_case_insensitively() {
    let fake = FakeGitHub::start().await;
    fake.script("review", &[Fault::Reset { lands: true }]);
    let github = token_client(&fake);
    let mut t = target(58);
    t.environment = "Production".into();

    // Landed under GitHub's spelling; our gate says "Production".
    let outcome = github.review(&t, Verdict::Approve, "ok").await;
    assert_eq!(outcome, ReviewOutcome::Delivered);
    assert_eq!(fake.reviews(58).len(), 1);
    fake.waits_on(59, "production");
    let mut waiting = target(59);
    waiting.environment = "PRODUCTION".into();
    assert!(github.waiting(&waiting).await.expect("pending deployments"));
}
