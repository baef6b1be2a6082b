//! The one end-to-end test binary: port contracts on every backend, and the
//! `stratus` command driven as a user would.

use stratus_tests::{aws, contract, local};

/// Runs a case on the embedded backend and on the AWS emulators.
///
/// - `suite::case, ...`: a port contract case, over the stores alone.
/// - `server: name => function, ...`: a case against a running `stratus
///   serve` (its environment, mutable, and a [`Look`] at its stores).
macro_rules! on_both_backends {
    (server: $($case:ident => $run:path),* $(,)?) => {
        $(
            mod $case {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn local_backend() {
                    let mut env = Env::local();
                    let look = Look::local(&env);
                    $run(&mut env, look).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn aws_backend() {
                    let Some((mut env, look, _)) = Look::aws().await else {
                        return;
                    };
                    $run(&mut env, look).await;
                }
            }
        )*
    };
    ($($suite:ident :: $case:ident),* $(,)?) => {
        $(
            mod $case {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn local_backend() {
                    contract::$suite::$case(&local(2)).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn aws_backend() {
                    if let Some(backend) = aws(2).await {
                        contract::$suite::$case(&backend).await;
                    }
                }
            }
        )*
    };
}

mod blob {
    use super::*;
    on_both_backends!(
        blob::round_trip_and_missing_keys,
        blob::byte_ranges,
        blob::large_bodies,
        blob::listing,
        blob::puts_are_atomic,
        blob::bad_keys_are_refused,
    );
}

mod index {
    use super::*;
    on_both_backends!(
        index::round_trip_and_versions,
        index::conditional_write_conflicts,
        index::bad_requests_are_permanent,
        index::queries,
        index::concurrent_allocation,
    );
}

mod queue {
    use super::*;
    on_both_backends!(
        queue::send_receive_ack,
        queue::redelivery_after_visibility_timeout,
        queue::send_and_ack,
        queue::dead_lettering,
        queue::delayed_jobs,
        queue::bad_requests_are_permanent,
        queue::competing_consumers,
    );

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn in_flight_jobs_survive_a_crash() {
        contract::queue::in_flight_jobs_survive_a_crash(&local(2)).await;
    }
}

mod accounts {
    use super::*;
    on_both_backends!(
        accounts::domains_users_and_mailboxes,
        accounts::uidvalidity_is_unique,
        accounts::subscriptions_are_names
    );
}

mod cli {
    use std::sync::Arc;

    use stratus_tests::cli::{Env, admin_round_trip, serve_lifecycle};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn admin_commands_local_backend() {
        let env = Env::local();
        // The data directory is created on first use.
        env.ok(&["domain", "list"], b"");
        let stores = stratus_store_local::LocalStores::open(&env.data_dir(), 5).unwrap();
        admin_round_trip(&env, Arc::new(stores.index)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn admin_commands_aws_backend() {
        let Some(settings) = stratus_tests::aws_settings() else {
            return;
        };
        stratus_store_aws::provision::ensure(&settings, 5)
            .await
            .unwrap();
        let stores = stratus_store_aws::AwsStores::connect(&settings)
            .await
            .unwrap();
        admin_round_trip(&Env::aws(&settings), Arc::new(stores.index)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serve_local_backend() {
        serve_lifecycle(&Env::local()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn proxy_protocol_local_backend() {
        let mut env = Env::local();
        let look = stratus_tests::smtp::Look::local(&env);
        stratus_tests::smtp::proxy_protocol_names_the_client(&mut env, look).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serve_aws_backend() {
        let Some(settings) = stratus_tests::aws_settings() else {
            return;
        };
        stratus_store_aws::provision::ensure(&settings, 5)
            .await
            .unwrap();
        serve_lifecycle(&Env::aws(&settings)).await;
    }

    #[test]
    fn bad_data_directories_get_clear_errors() {
        let mut env = Env::local();
        env.set(
            "STRATUS_DATA_DIR",
            &env.dir.path().join("no/such/parent").display().to_string(),
        );
        let run = env.run(&["domain", "list"], b"");
        assert_eq!(run.code, 1, "{run:?}");
        assert!(run.stderr.contains("parent"), "{}", run.stderr);

        let file = env.dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        env.set("STRATUS_DATA_DIR", &file.display().to_string());
        let run = env.run(&["domain", "list"], b"");
        assert_eq!(run.code, 1);
        assert!(run.stderr.contains("not a directory"), "{}", run.stderr);

        let corrupt = env.dir.path().join("corrupt");
        std::fs::create_dir(&corrupt).unwrap();
        std::fs::write(corrupt.join("index.db"), vec![0x5a; 8192]).unwrap();
        env.set("STRATUS_DATA_DIR", &corrupt.display().to_string());
        let run = env.run(&["domain", "list"], b"");
        assert_eq!(run.code, 1);
        assert!(
            run.stderr.contains("index.db") && run.stderr.contains("corrupt"),
            "{}",
            run.stderr
        );
        assert_eq!(
            std::fs::read(corrupt.join("index.db")).unwrap(),
            vec![0x5a; 8192],
            "a corrupt file is left as it was"
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let mut env = Env::local();
        env.set("STRATUS_SMTP_LISTEN", "not-an-address");
        let run = env.run(&["serve"], b"");
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stderr.contains("STRATUS_SMTP_LISTEN"), "{}", run.stderr);
    }
}

mod bad_environment {
    use std::process::Command;
    use std::time::Duration;

    use bytes::Bytes;
    use stratus_core::BlobKey;
    use stratus_core::ports::{Condition, IndexExt, Key, QueueName};
    use stratus_store_aws::{AwsSettings, AwsStores};
    use stratus_store_local::LocalStores;

    /// Nothing listens on the endpoint: every port answers `Retryable`.
    #[tokio::test]
    async fn unreachable_endpoint_is_retryable() {
        let settings = AwsSettings {
            endpoint: Some("http://127.0.0.1:9".into()),
            dynamodb_endpoint: None,
            region: "us-east-1".into(),
            bucket: "b".into(),
            archive_bucket: "a".into(),
            table: "t".into(),
            queue_prefix: "q-".into(),
        };
        let stores = AwsStores::connect(&settings).await.unwrap();
        let key = BlobKey::parse("msg/x").unwrap();
        let e = stratus_core::BlobStore::put(&stores.blobs, &key, Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(e.is_retryable(), "{e}");
        let e = stratus_core::Index::get(&stores.index, &Key::new("p", "s"))
            .await
            .unwrap_err();
        assert!(e.is_retryable(), "{e}");
        let e = stratus_core::Queue::send(&stores.queue, QueueName::Inbound, b"{}", Duration::ZERO)
            .await
            .unwrap_err();
        assert!(e.is_retryable(), "{e}");
    }

    /// A full disk (a 1 MiB tmpfs) is `Retryable`, and leaves no partial
    /// object behind. Needs root to mount; says so and skips otherwise.
    #[tokio::test]
    async fn full_disk_is_retryable_and_leaves_nothing_half_written() {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir.path())
            .output()
            .is_ok_and(|o| o.status.success());
        if !mounted {
            eprintln!("skipped: cannot mount a tmpfs here (needs root)");
            return;
        }
        struct Unmount<'a>(&'a std::path::Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = Command::new("umount").arg(self.0).status();
            }
        }
        let _guard = Unmount(dir.path());
        let stores = LocalStores::open(&dir.path().join("data"), 5).unwrap();
        let key = BlobKey::parse("msg/big").unwrap();
        let e = stratus_core::BlobStore::put(&stores.blobs, &key, Bytes::from(vec![7u8; 2 << 20]))
            .await
            .unwrap_err();
        assert!(e.is_retryable(), "{e}");
        assert_eq!(
            stratus_core::BlobStore::get(&stores.blobs, &key, None)
                .await
                .unwrap(),
            None,
            "no partial object"
        );
        let tmp = std::fs::read_dir(dir.path().join("data/blobs/.tmp"))
            .unwrap()
            .count();
        assert_eq!(tmp, 0, "temporary file removed");

        // Fill the index until the disk is full: the error is Retryable and
        // every value written before it reads back whole.
        let mut written = 0;
        let err = loop {
            let value = vec![b'v'; 60 * 1024];
            match stores
                .index
                .put(
                    Key::new("fill", format!("{written:05}")),
                    value,
                    Condition::Any,
                )
                .await
            {
                Ok(_) => written += 1,
                Err(e) => break e,
            }
            assert!(written < 100, "a 1 MiB disk cannot hold 6 MB");
        };
        assert!(err.is_retryable(), "{err}");
        for n in 0..written {
            let item =
                stratus_core::Index::get(&stores.index, &Key::new("fill", format!("{n:05}")))
                    .await
                    .unwrap()
                    .unwrap();
            assert_eq!(item.value.len(), 60 * 1024);
        }
    }
}

mod sweep {
    use super::*;
    on_both_backends!(sweep::sweep_gives_storage_back,);
}

mod pipeline {
    use super::*;
    on_both_backends!(
        pipeline::message_reaches_mailboxes_and_archive,
        pipeline::dmarc_quarantine_files_to_junk,
        pipeline::dmarc_failing_hosted_mail_is_not_forwarded,
        pipeline::nothing_accepted_is_dropped_silently,
        pipeline::stages_are_idempotent,
        pipeline::concurrent_appends_keep_uids_dense,
        pipeline::huge_structures_spill_to_the_blob_store,
        pipeline::broken_messages_are_delivered,
        pipeline::expunge_and_leases,
        pipeline::chained_stages_take_one_step,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lambda_functions_on_the_aws_backend() {
    let Some(settings) = stratus_tests::aws_settings() else {
        return;
    };
    stratus_store_aws::provision::ensure(&settings, 5)
        .await
        .unwrap();
    let stores = stratus_store_aws::AwsStores::connect(&settings)
        .await
        .unwrap();
    let backend = stratus_tests::Backend::from_aws(stores);
    contract::pipeline::lambda_functions_run_the_pipeline(&backend, &settings).await;
}

mod mail_flow {

    use stratus_tests::cli::Env;
    use stratus_tests::smtp::{
        Look, authentication_before_the_final_reply, clients_deliver_to_mailboxes,
        crash_loses_no_acknowledged_message, poplib_reads_and_deletes,
    };

    on_both_backends!(server:
        clients => clients_deliver_to_mailboxes,
        authentication => authentication_before_the_final_reply,
        pop3 => poplib_reads_and_deletes,
    );

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn crash_local_backend() {
        let env = Env::local();
        let look = Look::local(&env);
        crash_loses_no_acknowledged_message(&env, look, 4, 25).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn crash_aws_backend() {
        let Some((env, look, _)) = Look::aws().await else {
            return;
        };
        crash_loses_no_acknowledged_message(&env, look, 2, 8).await;
    }
}

mod spam {
    use stratus_tests::cli::Env;
    use stratus_tests::smtp::Look;
    use stratus_tests::spam::{
        blocklists_are_asked, quarantine_holds_and_releases, spam_before_and_after_acceptance,
        viruses_before_acceptance,
    };

    on_both_backends!(server:
        filtering => spam_before_and_after_acceptance,
        viruses => viruses_before_acceptance,
        quarantine => quarantine_holds_and_releases,
        blocklists => blocklists_are_asked,
    );
}

mod sieve {
    use stratus_tests::cli::Env;
    use stratus_tests::sieve::sieve_files_delivered_mail;
    use stratus_tests::smtp::Look;

    on_both_backends!(server:
        filing => sieve_files_delivered_mail,
        managesieve => stratus_tests::managesieve::managesieve_clients,
        vacation => stratus_tests::sieve::vacation_replies,
        catch_all => stratus_tests::sieve::catch_all_takes_unknown_addresses,
        forwarding => stratus_tests::forwarding::forwards_with_srs,
        lists => stratus_tests::lists::lists_distribute_hold_and_count_bounces,
    );
}

mod admin_ui {
    use stratus_tests::admin_ui::a_new_admin_walks_through_the_admin_pages;
    use stratus_tests::cli::Env;
    use stratus_tests::smtp::Look;

    on_both_backends!(server:
        walk => a_new_admin_walks_through_the_admin_pages,
    );
}

mod jmap {
    use stratus_tests::cli::Env;
    use stratus_tests::jmap::a_jmap_client_reads_searches_flags_and_moves;
    use stratus_tests::smtp::Look;

    on_both_backends!(server:
        client => a_jmap_client_reads_searches_flags_and_moves,
    );
}

mod webmail {
    use stratus_tests::cli::Env;
    use stratus_tests::smtp::Look;
    use stratus_tests::webmail::two_users_mail_each_other_in_the_browser;

    on_both_backends!(server:
        walk => two_users_mail_each_other_in_the_browser,
    );
}

mod credentials {
    use stratus_tests::accounts::app_passwords_and_revocations;
    use stratus_tests::cli::Env;
    use stratus_tests::smtp::Look;

    on_both_backends!(server:
        app_passwords => app_passwords_and_revocations,
    );
}

mod imap {

    use stratus_tests::cli::Env;
    use stratus_tests::imap::{
        an_office_behind_one_address, bulk_operations_on_hundreds_of_messages,
        idle_hears_other_sessions, imaplib_command_families, mbsync_syncs_both_ways,
        neomutt_opens_inbox,
    };
    use stratus_tests::smtp::Look;

    on_both_backends!(server:
        imaplib => imaplib_command_families,
        bulk => bulk_operations_on_hundreds_of_messages,
        mbsync => mbsync_syncs_both_ways,
        neomutt => neomutt_opens_inbox,
    );

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn office_local_backend() {
        an_office_behind_one_address(&Env::local()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn idle_local_backend() {
        idle_hears_other_sessions(&Env::local(), None).await;
    }

    /// Two gateways on one AWS backend: the idler is on one, the change
    /// is made through the other.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn idle_across_gateways_aws_backend() {
        let Some((env, _, settings)) = Look::aws().await else {
            return;
        };
        let second = Env::aws(&settings);
        idle_hears_other_sessions(&env, Some(&second)).await;
    }
}

mod pop3 {
    use stratus_tests::cli::Env;
    use stratus_tests::pop3::{
        fetchmail_keep_then_delete, imap_and_pop3_share_the_inbox, pop3_lock_holds_across_gateways,
    };
    use stratus_tests::smtp::Look;

    on_both_backends!(server:
        fetchmail => fetchmail_keep_then_delete,
        mixed => imap_and_pop3_share_the_inbox,
    );

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn lock_across_gateways_aws_backend() {
        let Some((env, _, settings)) = Look::aws().await else {
            return;
        };
        pop3_lock_holds_across_gateways(&env, &Env::aws(&settings)).await;
    }
}

mod outbound {
    use stratus_tests::cli::Env;
    use stratus_tests::outbound::{
        dane_is_enforced, dane_with_a_validating_resolver, mta_sts_is_enforced,
        queue_list_retry_bounce_delete, retries_then_delivery_or_expiry,
        submission_and_delivery_to_another_server, swaks_and_neomutt_submit,
    };
    use stratus_tests::smtp::Look;

    on_both_backends!(server:
        queue => queue_list_retry_bounce_delete,
        submission_clients => swaks_and_neomutt_submit,
        retries => retries_then_delivery_or_expiry,
    );

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn mta_sts_local_backend() {
        let mut a = Env::local();
        let mut b = Env::local();
        let (a_look, b_look) = (Look::local(&a), Look::local(&b));
        mta_sts_is_enforced(&mut a, a_look, &mut b, b_look).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn dane_local_backend() {
        let mut a = Env::local();
        let mut b = Env::local();
        let (a_look, b_look) = (Look::local(&a), Look::local(&b));
        dane_is_enforced(&mut a, a_look, &mut b, b_look).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn dane_unbound_local_backend() {
        let mut a = Env::local();
        let mut b = Env::local();
        let (a_look, b_look) = (Look::local(&a), Look::local(&b));
        dane_with_a_validating_resolver(&mut a, a_look, &mut b, b_look).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_gateways_local_backend() {
        let mut a = Env::local();
        let b = Env::local();
        let (a_look, b_look) = (Look::local(&a), Look::local(&b));
        submission_and_delivery_to_another_server(&mut a, a_look, &b, b_look).await;
    }

    /// Gateway A (the sender) on the AWS emulators, B on the embedded
    /// backend: the send stage's state and retries live in DynamoDB and SQS.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_gateways_aws_backend() {
        let Some((mut a, a_look, _)) = Look::aws().await else {
            return;
        };
        let b = Env::local();
        let b_look = Look::local(&b);
        submission_and_delivery_to_another_server(&mut a, a_look, &b, b_look).await;
    }
}

mod chaos {
    use stratus_tests::chaos::{kill_and_restart_under_load, sweep_survives_kill_9};
    use stratus_tests::cli::Env;
    use stratus_tests::smtp::Look;

    /// Ten SIGKILLs under SMTP and IMAP load on the embedded backend.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn kill_9_under_load_local_backend() {
        let mut env = Env::local();
        let look = Look::local(&env);
        kill_and_restart_under_load(&mut env, look, 10).await;
    }

    /// Eight rounds of SIGKILL during EXPUNGE and during the sweep.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sweep_under_kill_9_local_backend() {
        let mut env = Env::local();
        let look = Look::local(&env);
        sweep_survives_kill_9(&mut env, look, 8).await;
    }
}
