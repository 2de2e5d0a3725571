//! `api-shield generate man|completions SHELL`: the man page and shell completions, generated
//! from the command line's own definition (used by `cargo xtask install`).

use anyhow::Result;
use clap::CommandFactory;

/// Arguments.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// The man pages (section 8): api-shield(8) as roff on stdout, or with `--dir` that page
    /// and one per subcommand (api-shield-run(8), ...) written into DIR.
    Man {
        /// Write every page into this directory.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Completions for a shell on stdout.
    Completions {
        /// bash, zsh or fish.
        shell: clap_complete::Shell,
    },
}

/// Writes what was asked to stdout.
pub(super) fn run(args: &Args) -> Result<()> {
    let mut command = super::Cli::command();
    let mut out = std::io::stdout();
    match &args.what {
        What::Man { dir: None } => main_page(command, &mut out)?,
        What::Man { dir: Some(dir) } => {
            std::fs::create_dir_all(dir)?;
            let mut page = std::fs::File::create(dir.join("api-shield.8"))?;
            main_page(command.clone(), &mut page)?;
            for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
                sub_pages(sub, "api-shield", dir)?;
            }
        }
        What::Completions { shell } => {
            clap_complete::generate(*shell, &mut command, "api-shield", &mut out);
        }
    }
    Ok(())
}

/// api-shield-SUB(8) for `sub` and, recursively, api-shield-SUB-SUBSUB(8) for its own.
fn sub_pages(sub: &clap::Command, parent: &str, dir: &std::path::Path) -> Result<()> {
    let name = format!("{parent}-{}", sub.get_name());
    let bin = format!(
        "{} {}",
        parent
            .replace('-', " ")
            .replacen("api shield", "api-shield", 1),
        sub.get_name()
    );
    let page = sub
        .clone()
        .disable_help_subcommand(true)
        .display_name(name.clone())
        .bin_name(bin);
    let mut file = std::fs::File::create(dir.join(format!("{name}.8")))?;
    clap_mangen::Man::new(page).section("8").render(&mut file)?;
    for nested in sub.get_subcommands().filter(|s| !s.is_hide_set()) {
        sub_pages(nested, &name, dir)?;
    }
    Ok(())
}

/// api-shield(8): clap's sections, then the ones an operator looks for in a daemon's page.
fn main_page(command: clap::Command, out: &mut dyn std::io::Write) -> Result<()> {
    // `help` has no page of its own: every page documents its options.
    let man = clap_mangen::Man::new(command.disable_help_subcommand(true)).section("8");
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    let extra = EXTRA_SECTIONS.replace("@LAYOUT@", &api_shield_common::LAYOUT_VERSION.to_string());
    out.write_all(extra.as_bytes())?;
    man.render_version_section(out)?;
    Ok(())
}

/// FILES, EXIT STATUS, EXAMPLES and SEE ALSO, in roff (`@LAYOUT@`: the map layout version).
const EXTRA_SECTIONS: &str = r#".SH FILES
.TP
\fI/etc/api\-shield/api\-shield.toml\fR
The configuration (TOML). \fBapi\-shield check\-config\fR checks a file.
.TP
\fI/etc/systemd/system/api\-shield.service\fR
The systemd unit (Type=notify; \fBsystemctl reload\fR re\-reads the configuration).
.TP
\fI/sys/fs/bpf/api\-shield/v@LAYOUT@/\fR
Pinned maps (bans, counters, limiter state) and links (fastpath.pin_dir). One daemon owns it
at a time.
.TP
\fI/run/api\-shield/control.sock\fR
The control socket (mode 0600, root only) that status, reload, top, ban, unban, bans and stats
use while the daemon runs.
.TP
\fI/run/api\-shield/status.json\fR
Where the daemon records the interfaces it attached to.
.SH "EXIT STATUS"
.TP
0
Success.
.TP
1
An operational failure (the kernel refused BPF, an interface is busy, the daemon is not
running, another daemon owns the pin directory).
.TP
64
A bad configuration or bad arguments (EX_USAGE): the message names file, line and key, or the
argument; this includes bans and deny rules refused by the guard rails.
.SH EXAMPLES
.nf
api\-shield check\-config /etc/api\-shield/api\-shield.toml
systemctl start api\-shield; api\-shield status
api\-shield ban 203.0.113.7 \-\-ttl 15m \-\-reason "credential stuffing"
api\-shield bans; api\-shield unban 203.0.113.7
api\-shield stats \-\-json
api\-shield reload
systemctl stop api\-shield; api\-shield detach eth0
api\-shield uninstall\-maps
.fi
.SH "SEE ALSO"
\fBsystemctl\fR(1), \fBjournalctl\fR(1), \fBip\fR(8), and the pages of each subcommand,
\fBapi\-shield\-run\fR(8) to \fBapi\-shield\-uninstall\-maps\fR(8).
"#;
