//! Web sign-in, the session cookie and its CSRF token, users' own
//! accounts (password, app passwords), and admin roles held by users.

use std::sync::Arc;

use serde_json::json;

use super::api_tests::{Answer, Api, api, is_problem, items};
use crate::service::Role;
use crate::throttle::{LoginThrottle, ThrottlePolicy};

/// A browser: the cookie and CSRF token it holds after signing in.
struct Browser {
    cookie: String,
    csrf: String,
}

impl Api {
    async fn add_user(&self, admin: &str, address: &str, password: &str) {
        let body = json!({"address": address, "password": password}).to_string();
        let a = self
            .send(
                "POST",
                "/api/v1/users",
                &[("Authorization", &format!("Bearer {admin}"))],
                Some(&body),
            )
            .await;
        assert_eq!(a.status, 201, "{a:?}");
    }

    /// `PATCH /api/v1/users/{address}` with `key`.
    async fn patch_user(&self, key: &str, address: &str, body: &str) -> Answer {
        let auth = format!("Bearer {key}");
        self.send(
            "PATCH",
            &format!("/api/v1/users/{address}"),
            &[("Authorization", &auth)],
            Some(body),
        )
        .await
    }

    async fn sign_in(&self, address: &str, password: &str) -> Result<Browser, Answer> {
        let body = json!({"address": address, "password": password}).to_string();
        let a = self.send("POST", "/api/v1/session", &[], Some(&body)).await;
        if a.status != 201 {
            return Err(a);
        }
        let set = a.header("set-cookie").expect("a cookie").to_string();
        for attribute in ["httponly", "secure", "samesite=strict", "path=/"] {
            assert!(set.contains(attribute), "{set}");
        }
        let cookie = set.split(';').next().unwrap().to_string();
        assert!(cookie.starts_with("__host-stratus_session="), "{cookie}");
        // Headers were lower-cased by the helper; the value is hex.
        let cookie = cookie.replacen("__host-stratus_session", "__Host-stratus_session", 1);
        let csrf = a.body["csrf_token"].as_str().expect("a token").to_string();
        assert_eq!(a.body["address"], address);
        Ok(Browser { cookie, csrf })
    }

    /// A request from `browser`, with its CSRF token unless `csrf` says
    /// otherwise.
    async fn browse(
        &self,
        browser: &Browser,
        method: &str,
        path: &str,
        body: Option<&str>,
        csrf: Option<&str>,
    ) -> Answer {
        let csrf = csrf.unwrap_or(&browser.csrf);
        let mut headers = vec![("Cookie", browser.cookie.as_str())];
        if !csrf.is_empty() {
            headers.push(("X-CSRF-Token", csrf));
        }
        self.send(method, path, &headers, body).await
    }
}

#[tokio::test]
async fn a_user_signs_in_and_manages_app_passwords_with_csrf_tokens() {
    let api = api("web-signin").await;
    let admin = api.two_domains().await;
    api.add_user(&admin, "ann@a.example", "first password 1")
        .await;

    // Wrong password, unknown user: 401, no cookie.
    for (who, pw) in [
        ("ann@a.example", "wrong password"),
        ("nobody@a.example", "first password 1"),
    ] {
        let a = api.sign_in(who, pw).await.err().expect("refused");
        assert!(is_problem(&a, 401), "{a:?}");
        assert!(a.header("set-cookie").is_none());
    }

    let ann = api
        .sign_in("ann@a.example", "first password 1")
        .await
        .unwrap();
    let a = api.browse(&ann, "GET", "/api/v1/me", None, None).await;
    assert_eq!(
        (a.status, &a.body["address"]),
        (200, &json!("ann@a.example")),
        "{a:?}"
    );
    let a = api.browse(&ann, "GET", "/api/v1/session", None, None).await;
    assert_eq!(a.body["csrf_token"], json!(ann.csrf));

    // A change without the token, or with a forged one: 403.
    // The account password is asked again: a stolen session alone cannot
    // make itself a lasting way in.
    for wrong in [
        json!({"name": "Phone"}),
        json!({"name": "Phone", "current_password": "nope"}),
    ] {
        let a = api
            .browse(
                &ann,
                "POST",
                "/api/v1/me/app-passwords",
                Some(&wrong.to_string()),
                None,
            )
            .await;
        assert!(is_problem(&a, 422) || is_problem(&a, 403), "{a:?}");
    }
    let body = json!({"name": "Phone", "current_password": "first password 1"}).to_string();
    for forged in ["", "00"] {
        let a = api
            .browse(
                &ann,
                "POST",
                "/api/v1/me/app-passwords",
                Some(&body),
                Some(forged),
            )
            .await;
        assert!(is_problem(&a, 403), "{a:?}");
    }
    let a = api
        .browse(&ann, "POST", "/api/v1/me/app-passwords", Some(&body), None)
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    let phone = a.body["password"].as_str().unwrap().to_string();
    assert_eq!(phone.len(), 24, "{phone}");
    let a = api
        .browse(&ann, "POST", "/api/v1/me/app-passwords", Some(&body), None)
        .await;
    assert!(is_problem(&a, 409), "the same name twice: {a:?}");
    let a = api
        .browse(&ann, "GET", "/api/v1/me/app-passwords", None, None)
        .await;
    assert_eq!(items(&a, "name"), vec![json!("Phone")]);
    assert!(
        !a.body.to_string().contains(&phone[5..]),
        "never shown again"
    );

    // An app password is not for the web.
    let a = api
        .sign_in("ann@a.example", &phone)
        .await
        .err()
        .expect("refused");
    assert!(is_problem(&a, 401), "{a:?}");

    // A plain user is no admin: the admin API refuses.
    let a = api.browse(&ann, "GET", "/api/v1/domains", None, None).await;
    assert!(is_problem(&a, 403), "{a:?}");

    let a = api
        .browse(&ann, "DELETE", "/api/v1/me/app-passwords/Phone", None, None)
        .await;
    assert_eq!(a.status, 204, "{a:?}");
    let a = api
        .browse(&ann, "DELETE", "/api/v1/me/app-passwords/Phone", None, None)
        .await;
    assert!(is_problem(&a, 404), "{a:?}");

    // Signing out ends the session; the cookie is cleared.
    let a = api
        .browse(&ann, "DELETE", "/api/v1/session", None, None)
        .await;
    assert_eq!(a.status, 204, "{a:?}");
    assert!(a.header("set-cookie").unwrap().contains("max-age=0"));
    let a = api.browse(&ann, "GET", "/api/v1/me", None, None).await;
    assert!(is_problem(&a, 401), "{a:?}");

    // A cookie that is not ours.
    let fake = Browser {
        cookie: format!("__Host-stratus_session={}", "ab".repeat(32)),
        csrf: String::new(),
    };
    let a = api.browse(&fake, "GET", "/api/v1/me", None, None).await;
    assert!(is_problem(&a, 401), "{a:?}");

    // Every change above is in the audit log, by the user.
    let a = api
        .send(
            "GET",
            "/api/v1/audit",
            &[("Authorization", &format!("Bearer {admin}"))],
            None,
        )
        .await;
    let actions = items(&a, "action");
    assert!(actions.contains(&json!("user.app_password.add")), "{a:?}");
    assert!(
        actions.contains(&json!("user.app_password.delete")),
        "{a:?}"
    );
    assert!(items(&a, "who").contains(&json!("user:ann@a.example")));
}

#[tokio::test]
async fn a_new_password_or_a_disabled_account_ends_web_sessions() {
    let api = api("web-end").await;
    let admin = api.two_domains().await;
    api.add_user(&admin, "ann@a.example", "first password 1")
        .await;
    let laptop = api
        .sign_in("ann@a.example", "first password 1")
        .await
        .unwrap();
    let phone = api
        .sign_in("ann@a.example", "first password 1")
        .await
        .unwrap();

    // The current password is needed to set a new one.
    let body =
        json!({"current_password": "not it", "new_password": "second password 2"}).to_string();
    let a = api
        .browse(&laptop, "PUT", "/api/v1/me/password", Some(&body), None)
        .await;
    assert!(
        is_problem(&a, 403),
        "a wrong current password is no ended session: {a:?}"
    );
    let body = json!({"current_password": "first password 1", "new_password": "second password 2"})
        .to_string();
    let a = api
        .browse(&laptop, "PUT", "/api/v1/me/password", Some(&body), None)
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    let set = a.header("set-cookie").unwrap();
    let laptop = super::account_tests::Browser {
        cookie: set
            .split(';')
            .next()
            .unwrap()
            .replacen("__host-", "__Host-", 1),
        csrf: a.body["csrf_token"].as_str().unwrap().to_string(),
    };
    // The other browser's session has ended; this one has a new one.
    let a = api.browse(&phone, "GET", "/api/v1/me", None, None).await;
    assert!(is_problem(&a, 401), "{a:?}");
    let a = api.browse(&laptop, "GET", "/api/v1/me", None, None).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(
        api.sign_in("ann@a.example", "first password 1")
            .await
            .is_err()
    );

    // An admin disables the account: the session ends, signing in fails.
    let a = api
        .patch_user(&admin, "ann@a.example", r#"{"disabled": true}"#)
        .await;
    assert_eq!(
        (a.status, &a.body["disabled"]),
        (200, &json!(true)),
        "{a:?}"
    );
    let a = api.browse(&laptop, "GET", "/api/v1/me", None, None).await;
    assert!(is_problem(&a, 401), "{a:?}");
    assert!(
        api.sign_in("ann@a.example", "second password 2")
            .await
            .is_err()
    );
    let a = api
        .patch_user(&admin, "ann@a.example", r#"{"disabled": false}"#)
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    let back = api
        .sign_in("ann@a.example", "second password 2")
        .await
        .unwrap();

    // Deleted and made again: the old cookie is not the new account's.
    let auth = format!("Bearer {admin}");
    let a = api
        .send(
            "DELETE",
            "/api/v1/users/ann@a.example",
            &[("Authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(a.status, 204, "{a:?}");
    api.add_user(&admin, "ann@a.example", "third password 3")
        .await;
    let a = api.browse(&back, "GET", "/api/v1/me", None, None).await;
    assert!(is_problem(&a, 401), "{a:?}");
}

#[tokio::test]
async fn a_password_reset_takes_the_app_passwords_with_it() {
    let api = api("web-reset").await;
    let admin = api.two_domains().await;
    api.add_user(&admin, "ann@a.example", "first password 1")
        .await;
    let auth = format!("Bearer {admin}");
    let body = json!({"name": "Phone"}).to_string();
    let a = api
        .send(
            "POST",
            "/api/v1/users/ann@a.example/app-passwords",
            &[("Authorization", &auth)],
            Some(&body),
        )
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    // A PATCH that would fail halfway changes nothing: the password stays.
    let a = api
        .patch_user(
            &admin,
            "ann@a.example",
            r#"{"password": "second password 2", "admin": {"role": "domain_admin", "domains": []}}"#,
        )
        .await;
    assert!(is_problem(&a, 400), "{a:?}");
    assert!(
        api.sign_in("ann@a.example", "first password 1")
            .await
            .is_ok()
    );
    let a = api
        .patch_user(
            &admin,
            "ann@a.example",
            r#"{"password": "second password 2"}"#,
        )
        .await;
    assert_eq!(
        (a.status, &a.body["app_passwords"]),
        (200, &json!(0)),
        "{a:?}"
    );
}

#[tokio::test]
async fn keys_a_user_made_die_with_the_users_role() {
    let api = api("web-keys").await;
    let admin = api.two_domains().await;
    api.add_user(&admin, "ann@a.example", "ann password 1")
        .await;
    let a = api
        .patch_user(&admin, "ann@a.example", r#"{"admin": {"role": "admin"}}"#)
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    let ann = api
        .sign_in("ann@a.example", "ann password 1")
        .await
        .unwrap();
    let make = |domains: &str| json!({"role": "domain_admin", "domains": [domains]}).to_string();
    let a = api
        .browse(
            &ann,
            "POST",
            "/api/v1/apikeys",
            Some(&make("a.example")),
            None,
        )
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    let key = a.body["key"].as_str().unwrap().to_string();
    assert_eq!(a.body["created_by"], json!("user:ann@a.example"));
    let works = |key: String| {
        let api = &api;
        async move { api.call_key("GET", "/api/v1/domains", &key).await.status }
    };
    assert_eq!(works(key.clone()).await, 200);
    // A key that key made works while both hold.
    let child = api
        .send(
            "POST",
            "/api/v1/apikeys",
            &[("Authorization", &format!("Bearer {key}"))],
            Some(&make("a.example")),
        )
        .await;
    assert_eq!(child.status, 201, "{child:?}");
    let child = child.body["key"].as_str().unwrap().to_string();
    assert_eq!(works(child.clone()).await, 200);

    // Ann loses her role: her key and its child stop at once.
    let a = api
        .patch_user(
            &admin,
            "ann@a.example",
            r#"{"admin": {"role": "domain_admin", "domains": ["b.example"]}}"#,
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(works(key.clone()).await, 401);
    assert_eq!(works(child.clone()).await, 401);
    // Given back, they work again; disabled, they stop.
    let a = api
        .patch_user(&admin, "ann@a.example", r#"{"admin": {"role": "admin"}}"#)
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(works(key.clone()).await, 200);
    let a = api
        .patch_user(&admin, "ann@a.example", r#"{"disabled": true}"#)
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(works(key.clone()).await, 401);
    assert_eq!(works(child).await, 401);
}

#[tokio::test]
async fn users_with_admin_roles_administer_through_their_session() {
    let api = api("web-roles").await;
    let admin = api.two_domains().await;
    let k = format!("Bearer {admin}");
    api.add_user(&admin, "ann@a.example", "ann password 1")
        .await;
    api.add_user(&admin, "bob@b.example", "bob password 1")
        .await;

    // A domain admin key grants only within its domains.
    let a_key = api.key(Role::DomainAdmin, &["a.example"]).await;
    let a = api
        .patch_user(&a_key, "ann@a.example", r#"{"admin": {"role": "admin"}}"#)
        .await;
    assert!(is_problem(&a, 403), "{a:?}");
    let a = api
        .patch_user(
            &a_key,
            "ann@a.example",
            r#"{"admin": {"role": "domain_admin", "domains": ["b.example"]}}"#,
        )
        .await;
    assert!(is_problem(&a, 404), "b.example is invisible to it: {a:?}");
    let a = api
        .patch_user(
            &a_key,
            "ann@a.example",
            r#"{"admin": {"role": "domain_admin", "domains": ["a.example"]}}"#,
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        a.body["admin"],
        json!({"role": "domain_admin", "domains": ["a.example"]})
    );

    // Ann administers a.example from her browser, and only it.
    let ann = api
        .sign_in("ann@a.example", "ann password 1")
        .await
        .unwrap();
    let a = api.browse(&ann, "GET", "/api/v1/users", None, None).await;
    assert_eq!(items(&a, "address"), vec![json!("ann@a.example")], "{a:?}");
    let a = api
        .browse(&ann, "GET", "/api/v1/users/bob@b.example", None, None)
        .await;
    assert!(is_problem(&a, 404), "{a:?}");
    let body = json!({"address": "cat@a.example", "password": "cat password 1"}).to_string();
    let a = api
        .browse(&ann, "POST", "/api/v1/users", Some(&body), Some(""))
        .await;
    assert!(is_problem(&a, 403), "no CSRF token: {a:?}");
    let a = api
        .browse(&ann, "POST", "/api/v1/users", Some(&body), None)
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    // She cannot make herself an admin.
    let a = api
        .browse(
            &ann,
            "PATCH",
            "/api/v1/users/ann@a.example",
            Some(r#"{"admin": {"role": "admin"}}"#),
            None,
        )
        .await;
    assert!(is_problem(&a, 403), "{a:?}");

    // A domain admin cannot take over an account that holds more than it
    // does: not its password, not its app passwords, not the account.
    api.add_user(&admin, "root@a.example", "root password 1")
        .await;
    let a = api
        .patch_user(&admin, "root@a.example", r#"{"admin": {"role": "admin"}}"#)
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    for (method, path, body) in [
        (
            "PATCH",
            "/api/v1/users/root@a.example",
            Some(r#"{"password": "taken over 1"}"#),
        ),
        (
            "PATCH",
            "/api/v1/users/root@a.example",
            Some(r#"{"disabled": true}"#),
        ),
        (
            "POST",
            "/api/v1/users/root@a.example/app-passwords",
            Some(r#"{"name": "mine"}"#),
        ),
        ("DELETE", "/api/v1/users/root@a.example", None),
    ] {
        let a = api.browse(&ann, method, path, body, None).await;
        assert!(is_problem(&a, 403), "{method} {path}: {a:?}");
        let auth = format!("Bearer {a_key}");
        let a = api
            .send(method, path, &[("Authorization", &auth)], body)
            .await;
        assert!(is_problem(&a, 403), "{method} {path} with a key: {a:?}");
    }
    assert!(
        api.sign_in("root@a.example", "root password 1")
            .await
            .is_ok()
    );

    // Taking the role away takes effect at the next request.
    let a = api
        .patch_user(&admin, "ann@a.example", r#"{"admin": null}"#)
        .await;
    assert_eq!((a.status, &a.body["admin"]), (200, &json!(null)), "{a:?}");
    let a = api.browse(&ann, "GET", "/api/v1/users", None, None).await;
    assert!(is_problem(&a, 403), "{a:?}");

    // The audit log names her.
    let a = api
        .send("GET", "/api/v1/audit", &[("Authorization", &k)], None)
        .await;
    assert!(
        items(&a, "who").contains(&json!("user:ann@a.example")),
        "{a:?}"
    );
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_like_imap_logins() {
    let mut api = api("web-throttle").await;
    let admin = api.two_domains().await;
    api.add_user(&admin, "ann@a.example", "ann password 1")
        .await;
    api.ctx.shared.throttle = Arc::new(LoginThrottle::new(ThrottlePolicy {
        base_delay: std::time::Duration::from_millis(1),
        max_delay: std::time::Duration::from_millis(2),
        max_failures_per_pair: 3,
        ..ThrottlePolicy::default()
    }));
    for _ in 0..3 {
        let a = api.sign_in("ann@a.example", "wrong").await.err().unwrap();
        assert!(is_problem(&a, 401), "{a:?}");
    }
    // Now even the right password is not checked.
    let a = api
        .sign_in("ann@a.example", "ann password 1")
        .await
        .err()
        .expect("throttled");
    assert!(is_problem(&a, 429), "{a:?}");
}

#[tokio::test]
async fn malformed_sign_ins_are_clear_4xx() {
    let api = api("web-bad").await;
    for (body, status) in [
        ("{", 400),
        (r#"{"address": "a@b.example"}"#, 422),
        (r#"{"address": 1, "password": "x"}"#, 422),
        (
            r#"{"address": "a@b.example", "password": "x", "extra": 1}"#,
            422,
        ),
    ] {
        let a = api.send("POST", "/api/v1/session", &[], Some(body)).await;
        assert!(
            a.status == status && a.head.contains("application/problem+json"),
            "{body}: {a:?}"
        );
    }
    // A cookie with garbage in it.
    for cookie in [
        "__Host-stratus_session=",
        "__Host-stratus_session=../../x",
        "x=y",
    ] {
        let a = api
            .send("GET", "/api/v1/me", &[("Cookie", cookie)], None)
            .await;
        assert!(is_problem(&a, 401), "{cookie}: {a:?}");
    }
}
