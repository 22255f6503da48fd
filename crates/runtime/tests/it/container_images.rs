//! Images against the real Docker Engine: builds from a local context (multi-stage, target,
//! args, .dockerignore, a failing step), pulls with no registry, pruning, and the preflight
//! probe `image_has_binary`.

use std::fs;

use dockhand_runtime::{BuildSpec, ImageSource, PullPolicy, RuntimeError};
use dockhand_test_support::docker::{docker_ok, BUSYBOX_IMAGE, TESTAPP_IMAGE};

use crate::container::docker_runtime;

#[tokio::test]
async fn a_multi_stage_build_with_a_target_args_and_dockerignore() {
    let (rt, cleanup) = docker_runtime("build").await;
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    fs::write(
        c.join("Dockerfile.prod"),
        format!(
            "FROM {BUSYBOX_IMAGE} AS builder\nARG GREETING\nCOPY . /src\nRUN echo \"$GREETING\" > /greeting && ls /src > /listing\n\
             FROM {BUSYBOX_IMAGE} AS runtime\nCOPY --from=builder /greeting /listing /\nCMD [\"cat\", \"/greeting\"]\n\
             FROM {BUSYBOX_IMAGE} AS other\nRUN false\n"
        ),
    )
    .unwrap();
    fs::write(c.join(".dockerignore"), "secret.txt\n").unwrap();
    fs::write(c.join("secret.txt"), "do not send").unwrap();
    fs::write(c.join("app.txt"), "app").unwrap();
    let tag = format!("dockhand-test-build/{}:r1", cleanup.app);
    let mut lines = Vec::new();
    let built = rt
        .ensure_image(
            &ImageSource::Build(BuildSpec {
                app: cleanup.app.clone(),
                context: c.to_path_buf(),
                dockerfile: Some("Dockerfile.prod".into()),
                target: Some("runtime".into()),
                args: vec![("GREETING".into(), "hello from the build".into())],
                tag: tag.clone(),
            }),
            |line| lines.push(line.to_string()),
        )
        .await
        .expect("build");
    assert!(built.built);
    assert_eq!(built.reference, tag);
    assert!(lines.iter().any(|l| l.starts_with("Step ")), "{lines:?}");
    let run = |cmd: &str| docker_ok(&["run", "--rm", &tag, "sh", "-c", cmd]);
    assert_eq!(run("cat /greeting"), "hello from the build");
    let listing = run("cat /listing");
    assert!(listing.contains("app.txt"), "{listing}");
    assert!(
        !listing.contains("secret.txt"),
        ".dockerignore is respected: {listing}"
    );
    assert_eq!(
        docker_ok(&[
            "image",
            "inspect",
            "-f",
            "{{ index .Config.Labels \"dockhand.app\" }}",
            &tag
        ]),
        cleanup.app
    );

    // prune keeps what is listed and removes the rest of the app's built images.
    assert!(rt
        .prune_images(&cleanup.app, &[&tag])
        .await
        .unwrap()
        .is_empty());
    let removed = rt.prune_images(&cleanup.app, &[]).await.unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(rt.image_id(&tag).await.unwrap().is_none());
}

#[tokio::test]
async fn a_failing_build_step_is_an_error_with_its_output() {
    let (rt, cleanup) = docker_runtime("buildfail").await;
    let ctx = tempfile::tempdir().unwrap();
    fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {BUSYBOX_IMAGE}\nRUN echo preparing\nRUN echo the-step-output && exit 9\n"),
    )
    .unwrap();
    let err = rt
        .ensure_image(
            &ImageSource::Build(BuildSpec {
                app: cleanup.app.clone(),
                context: ctx.path().to_path_buf(),
                dockerfile: None,
                target: None,
                args: Vec::new(),
                tag: format!("dockhand-test-build/{}:bad", cleanup.app),
            }),
            |_| {},
        )
        .await
        .expect_err("the build fails");
    let text = err.to_string();
    assert!(matches!(err, RuntimeError::Build { .. }), "{text}");
    // The classic builder counts the labels it adds as steps: "Step 3/6".
    assert!(text.contains("Step 3/"), "{text}");
    assert!(text.contains("returned a non-zero code: 9"), "{text}");
    assert!(!text.contains("Running in"), "{text}");
    assert!(text.contains("the-step-output"), "{text}");
    assert!(
        !text.contains("preparing"),
        "only the failing step's output: {text}"
    );
}

#[tokio::test]
async fn pulling_an_absent_image_without_a_registry_names_the_image_and_the_cause() {
    let (rt, _cleanup) = docker_runtime("pull").await;
    // Nothing listens on port 1: the pull fails at once, as with no registry reachable.
    let image = "127.0.0.1:1/dockhand/absent:1";
    let err = rt
        .ensure_image(
            &ImageSource::Reference {
                image: image.into(),
                pull: PullPolicy::Missing,
            },
            |_| {},
        )
        .await
        .expect_err("no registry");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "image `{image}` is not present locally and pulling it failed: "
        )),
        "{text}"
    );
    assert!(text.contains("registry is reachable"), "{text}");

    let err = rt
        .ensure_image(
            &ImageSource::Reference {
                image: image.into(),
                pull: PullPolicy::Never,
            },
            |_| {},
        )
        .await
        .expect_err("never pulls");
    assert!(err.to_string().contains("pull = \"never\""), "{err}");

    // Present locally: `missing` does not pull, `always` warns when the pull fails.
    let local = rt
        .ensure_image(
            &ImageSource::Reference {
                image: BUSYBOX_IMAGE.into(),
                pull: PullPolicy::Missing,
            },
            |_| {},
        )
        .await
        .expect("present");
    assert!(!local.pulled && local.warnings.is_empty());
    let tagged = "127.0.0.1:1/dockhand/present:1";
    docker_ok(&["tag", BUSYBOX_IMAGE, tagged]);
    let always = rt
        .ensure_image(
            &ImageSource::Reference {
                image: tagged.into(),
                pull: PullPolicy::Always,
            },
            |_| {},
        )
        .await;
    docker_ok(&["rmi", tagged]);
    let always = always.expect("the local copy is used");
    assert_eq!(always.warnings.len(), 1, "{always:?}");
    assert!(always.warnings[0].starts_with(&format!(
        "failed to pull image `{tagged}`, using the local copy"
    )));
}

#[tokio::test]
async fn image_has_binary_looks_in_the_image_path_and_knows_absent_images() {
    let (rt, _cleanup) = docker_runtime("hasbin").await;
    assert_eq!(
        rt.image_has_binary(BUSYBOX_IMAGE, "sh").await.unwrap(),
        Some(true)
    );
    assert_eq!(
        rt.image_has_binary(BUSYBOX_IMAGE, "/bin/sh").await.unwrap(),
        Some(true)
    );
    assert_eq!(
        rt.image_has_binary(TESTAPP_IMAGE, "dockhand-testapp")
            .await
            .unwrap(),
        Some(true)
    );
    assert_eq!(
        rt.image_has_binary(TESTAPP_IMAGE, "sh").await.unwrap(),
        Some(false)
    );
    assert_eq!(
        rt.image_has_binary(TESTAPP_IMAGE, "/bin/sh").await.unwrap(),
        Some(false)
    );
    assert_eq!(
        rt.image_has_binary("dockhand-test/never-built:1", "sh")
            .await
            .unwrap(),
        None
    );
}
