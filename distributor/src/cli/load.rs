//! `pfs load`, `pfs manifest`, `pfs key`, `pfs config`: images and Cisco files.

use super::*;

#[derive(Subcommand, Debug)]
pub(super) enum ConfigCommand {
    /// Write SEP<MAC>.cnf.xml for every device of a site TOML (PFS flag: device > profile > enterprise).
    Render {
        #[arg(long)]
        config: std::path::PathBuf,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Print what a phone reads from a cnf.xml (SEP<MAC>.cnf.xml or XMLDefault.cnf.xml).
    Show {
        file: std::path::PathBuf,
        /// The phone's model: CP-7942G, Cisco 7942, or Cisco's device type number (434).
        #[arg(long)]
        model: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub(super) struct ManifestArgs {
    /// Load directory, or a TFTP folder holding many loads (then name one with --load).
    dir: std::path::PathBuf,
    /// The load to cover: its .loads name without the suffix, as a configuration's
    /// loadInformation gives it (e.g. SCCP41.9-4-2SR3-1S).
    #[arg(long, conflicts_with = "all")]
    load: Option<String>,
    /// One manifest per .loads in DIR, each as pfs-manifest.<LOAD>.json.
    #[arg(long)]
    all: bool,
    #[arg(long, default_value_t = pfs::manifest::DEFAULT_CHUNK, value_parser = clap::value_parser!(u32).range(1024..=1_048_576))]
    chunk_size: u32,
    /// Sign with this secret key (hex seed, from `pfs key generate`).
    #[arg(long)]
    sign_key: Option<std::path::PathBuf>,
    /// Check the directory against its existing manifest instead of writing one.
    #[arg(long)]
    verify: bool,
    /// With --verify: require a valid signature by this public key.
    #[arg(long)]
    public_key: Option<std::path::PathBuf>,
    /// Replace a signed manifest with an unsigned one (without --sign-key). Refused
    /// otherwise: phones configured with the public key would reject every new load.
    #[arg(long)]
    force: bool,
}

#[derive(Subcommand, Debug)]
pub(super) enum LoadCommand {
    /// Write a synthetic load with the file sizes of SCCP41.9-4-2SR3-1S, its .loads and manifest.
    Synth {
        #[arg(long)]
        out: std::path::PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        sign_key: Option<std::path::PathBuf>,
    },
    /// Show a .loads file's signed header and components, or a .sbn/.sgn/.sebn's header.
    Inspect {
        file: std::path::PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum KeyCommand {
    /// Write PREFIX.key (secret seed, hex, mode 0600) and PREFIX.pub (public key, hex).
    Generate {
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

/// Reads the manifest at `path` (signature checked with `public_key`) and verifies `dir`.
pub(super) fn verify_manifest(
    path: &std::path::Path,
    dir: &std::path::Path,
    public_key: Option<&std::path::Path>,
) -> anyhow::Result<pfs::manifest::Manifest> {
    let key = public_key
        .map(pfs::manifest::read_verifying_key)
        .transpose()?;
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let m = pfs::manifest::Manifest::parse(&bytes, key.as_ref())?;
    m.verify_dir(dir)?;
    Ok(m)
}

/// `pfs load inspect`: header kind and fields, digest check, components.
pub(super) fn run_load_inspect(file: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    use pfs::loads::{SignedHeader, parse_body, parse_signed_header};
    let bytes = std::fs::read(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let is_loads = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("loads"));
    if is_loads && bytes.len() > pfs::loads::MAX_LOADS_BYTES {
        anyhow::bail!("{}: {}", file.display(), pfs::loads::LoadsError::TooLarge);
    }
    let header =
        parse_signed_header(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let digest_ok = match &header {
        Some(SignedHeader::Gen5(g)) => Some(g.sha256_ok),
        _ => None,
    };
    let start = header.as_ref().map_or(0, SignedHeader::header_len);
    let body = if is_loads {
        Some(parse_body(&bytes[start..]).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?)
    } else {
        None
    };
    if json {
        let mut v = serde_json::json!({
            "file": file.display().to_string(),
            "size": bytes.len(),
            "header": header,
            // SHA-256 of the payload (5th-generation header); null when the header has no
            // digest pfs can check (TLV: RSA over SHA-1 with Cisco's key).
            "digest_ok": digest_ok,
        });
        if let Some((layout, version, components)) = &body {
            v["layout"] = serde_json::json!(layout);
            v["version"] = serde_json::json!(version);
            v["components"] = serde_json::json!(components);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}: {} bytes", file.display(), bytes.len());
        match &header {
            None => println!("header: none (no signed header)"),
            Some(SignedHeader::Tlv(h)) => print_tlv_header(h),
            Some(SignedHeader::Gen5(g)) => print_gen5_header(g),
        }
        if let Some((layout, version, components)) = &body {
            print_body(layout, version.as_deref(), components);
        }
    }
    if digest_ok == Some(false) {
        eprintln!(
            "{}: the payload's SHA-256 does not match its header",
            file.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// A TLV signed header in words (its RSA signature is Cisco's and not checked).
fn print_tlv_header(h: &pfs::loads::TlvHeader) {
    println!(
        "header: TLV signed header, version {}.{}, header length {} bytes",
        h.version[0], h.version[1], h.header_len
    );
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!("  name:      {}", opt(&h.file_name));
    println!("  signer:    {}", opt(&h.signer));
    println!("  serial:    {}", opt(&h.serial));
    println!("  CA:        {}", opt(&h.ca));
    let digest = match h.digest_algorithm {
        Some(1) => "SHA-1".to_string(),
        Some(n) => format!("algorithm {n}"),
        None => "-".into(),
    };
    let sig = if h.test_placeholder {
        "TEST PLACEHOLDER (synthetic file, not a signature)".to_string()
    } else {
        format!(
            "{} bytes, RSA with Cisco's key (not checked by pfs)",
            h.signature_len
        )
    };
    println!("  digest:    {digest}");
    println!("  signature: {sig}");
}

/// A 5th-generation signed header in words, with whether its SHA-256 matches the payload.
fn print_gen5_header(g: &pfs::loads::Gen5Header) {
    println!(
        "header: 5th-generation signed header (CD 34 12 AB), header length {} bytes, payload {} bytes",
        g.header_len, g.payload_len
    );
    println!("  name:      {}", g.file_name);
    println!("  flags:     {}", g.flags);
    println!(
        "  digest:    SHA-256 {} ({})",
        g.sha256,
        if g.sha256_ok {
            "matches the payload"
        } else {
            "DOES NOT MATCH the payload"
        }
    );
}

/// A `.loads` body: its layout, version and one line per component.
fn print_body(
    layout: &pfs::loads::Layout,
    version: Option<&str>,
    components: &[pfs::loads::Component],
) {
    println!(
        "body: {layout}{}",
        version
            .as_ref()
            .map(|v| format!(", version {v}"))
            .unwrap_or_default()
    );
    println!("components: {}", components.len());
    for c in components {
        let mut line = format!("  {}", c.name);
        if let Some(n) = c.size {
            line.push_str(&format!("  size {n}"));
        }
        if let Some(m) = &c.md5 {
            line.push_str(&format!("  md5 {m}"));
        }
        if let Some(p) = c.platform {
            line.push_str(&format!("  platform {p}"));
        }
        println!("{line}");
    }
}

/// `pfs config show`: what a phone (of `model`, if given) reads from a cnf.xml.
pub(super) fn run_config_show(
    file: &std::path::Path,
    model: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use pfs::phoneconfig::{ConfigError, Root, device_type, model_name, read_cnf_xml};
    let bytes = std::fs::read(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let dt = model
        .map(|m| device_type(m).ok_or_else(|| ConfigError::UnknownModel(m.to_owned())))
        .transpose()?;
    let cnf = read_cnf_xml(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let c = cnf
        .for_device(dt)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if json {
        let mut v = serde_json::to_value(&c)?;
        v["root"] = serde_json::to_value(cnf.root)?;
        v["loads"] = serde_json::to_value(&cnf.loads)?;
        v["addon_loads"] = serde_json::to_value(&cnf.addon_loads)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let root = match cnf.root {
        Root::Device => "<device> (one phone)",
        Root::Default => "<Default> (XMLDefault: per device type)",
    };
    println!("root: {root}");
    match &c.load_information {
        Some(l) => println!("load: {l}"),
        None if cnf.root == Root::Default && dt.is_none() && !cnf.loads.is_empty() => {
            println!("load: - (loads are listed per device type: choose one with --model)")
        }
        None => println!("load: -"),
    }
    println!(
        "peer_firmware_sharing: {}",
        if c.peer_firmware_sharing { "on" } else { "off" }
    );
    println!("load_server: {}", opt(&c.load_server));
    println!("log_server: {}", opt(&c.log_server));
    println!("ipv6_load_server: {}", opt(&c.ipv6_load_server));
    println!("ipv6_log_server: {}", opt(&c.ipv6_log_server));
    match c.device_type {
        Some(n) => println!(
            "device_type: {n} ({})",
            model_name(n).unwrap_or("model not in pfs's table")
        ),
        None => println!("device_type: -"),
    }
    if !cnf.addon_loads.is_empty() {
        println!(
            "add-on module loads (not the phone's): {}",
            cnf.addon_loads.join(", ")
        );
    }
    if cnf.root == Root::Default && dt.is_none() && !cnf.loads.is_empty() {
        println!("loads by device type:");
        for e in &cnf.loads {
            let n = e
                .device_type
                .map(|n| n.to_string())
                .unwrap_or_else(|| "any".into());
            // The number decides (the file's model text is sometimes wrong): show both
            // when they differ, as the JSON keeps the file's text under `model`.
            let table = e.device_type.and_then(model_name);
            let model = match (table, e.model.as_deref()) {
                (Some(t), Some(f)) if t != f => format!("{t} (the file says \"{f}\")"),
                (Some(t), _) => t.to_owned(),
                (None, Some(f)) => f.to_owned(),
                (None, None) => "-".to_owned(),
            };
            let load = if e.load.is_empty() { "-" } else { &e.load };
            println!("  {n:>6}  {model}: {load}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn run_manifest(a: ManifestArgs) -> anyhow::Result<ExitCode> {
    use pfs::manifest::{MANIFEST_FILE, manifest_file_for};
    let sign_key = a
        .sign_key
        .as_deref()
        .map(pfs::manifest::read_signing_key)
        .transpose()?;
    if a.all {
        let loads = pfs::manifest::loads_in_dir(&a.dir)?;
        if loads.is_empty() {
            anyhow::bail!("{}: no .loads file", a.dir.display());
        }
        let mut failed = 0;
        for lp in loads {
            let name = lp
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let path = a.dir.join(manifest_file_for(&name));
            if a.verify {
                match verify_manifest(&path, &a.dir, a.public_key.as_deref()) {
                    Ok(m) => println!("{}: {} files verified", m.load, m.files.len()),
                    Err(e) => {
                        eprintln!("{name}: {e}");
                        failed += 1;
                    }
                }
                continue;
            }
            if let Err(e) = write_manifest(&a, Some(&name), sign_key.as_ref(), &path) {
                eprintln!("{name}: {e}");
                failed += 1;
            }
        }
        return Ok(if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let path = a.dir.join(MANIFEST_FILE);
    if a.verify {
        let path = match a.load.as_deref() {
            Some(l) if a.dir.join(manifest_file_for(l)).exists() => {
                a.dir.join(manifest_file_for(l))
            }
            _ => path,
        };
        let m = verify_manifest(&path, &a.dir, a.public_key.as_deref())?;
        if let Some(l) = a.load.as_deref()
            && !m.load.eq_ignore_ascii_case(l)
        {
            anyhow::bail!(
                "{}: manifest is for load {}, not {l}",
                path.display(),
                m.load
            );
        }
        println!(
            "{}: {} files verified ({} bytes)",
            m.load,
            m.files.len(),
            m.load_bytes()
        );
        return Ok(ExitCode::SUCCESS);
    }
    write_manifest(&a, a.load.as_deref(), sign_key.as_ref(), &path)?;
    Ok(ExitCode::SUCCESS)
}

/// Builds the manifest of `load` in `a.dir`, signs it when a key is given, writes it to
/// `path` and says so. Errors: `path` holds a signed manifest and no key is given (unless
/// `--force`), or the directory does not hold the load.
fn write_manifest(
    a: &ManifestArgs,
    load: Option<&str>,
    sign_key: Option<&ed25519_dalek::SigningKey>,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    if sign_key.is_none() && !a.force && is_signed_manifest(path) {
        anyhow::bail!(
            "{}: holds a signed manifest; writing it again without --sign-key would replace \
             it with an unsigned one, which phones configured with the public key reject \
             (pass --sign-key KEY, or --force to drop the signature)",
            path.display()
        );
    }
    let mut m = pfs::manifest::manifest_for_dir(&a.dir, a.chunk_size, load)?;
    if let Some(k) = sign_key {
        m.sign(k);
    }
    std::fs::write(path, serde_json::to_vec_pretty(&m)?)?;
    println!(
        "{}: {} files, {} bytes -> {}",
        m.load,
        m.files.len(),
        m.load_bytes(),
        path.display()
    );
    Ok(())
}

/// Whether `path` is a manifest that carries a signature (a file that does not parse is
/// not: it is replaced like any stale output).
fn is_signed_manifest(path: &std::path::Path) -> bool {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| pfs::manifest::Manifest::parse(&bytes, None).ok())
        .is_some_and(|m| m.signature.is_some())
}

/// `pfs load synth`: a real-looking load with its manifest.
pub(super) fn run_load_synth(
    out: &std::path::Path,
    seed: u64,
    sign_key: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let key = sign_key.map(pfs::manifest::read_signing_key).transpose()?;
    let m = pfs::manifest::synth_load(out, seed, key.as_ref())?;
    println!(
        "{}: {} files, {} bytes, manifest {}",
        m.load,
        m.files.len(),
        m.load_bytes(),
        out.join(pfs::manifest::MANIFEST_FILE).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `pfs config render`: every phone's cnf.xml from a site file.
pub(super) fn run_config_render(
    config: &std::path::Path,
    out: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
    let site = pfs::phoneconfig::SiteConfig::parse(&text)?;
    std::fs::create_dir_all(out)?;
    for (name, xml) in site.render_all() {
        std::fs::write(out.join(&name), xml)?;
        println!("{}", out.join(name).display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `pfs key generate`: an Ed25519 key pair, the secret half readable by its owner only.
pub(super) fn run_key_generate(out: &std::path::Path) -> anyhow::Result<ExitCode> {
    use std::os::unix::fs::OpenOptionsExt;
    let (sk, vk) = pfs::manifest::generate_key()?;
    let secret = out.with_extension("key");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret)?;
    std::io::Write::write_all(
        &mut f,
        format!("{}\n", hex::encode(sk.to_bytes())).as_bytes(),
    )?;
    let public = out.with_extension("pub");
    std::fs::write(&public, format!("{}\n", hex::encode(vk.to_bytes())))?;
    println!("wrote {} and {}", secret.display(), public.display());
    Ok(ExitCode::SUCCESS)
}
