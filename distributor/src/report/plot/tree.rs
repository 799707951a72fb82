//! The peer trees plot: each hierarchy laid out tidily (children under their parent, no
//! crossing edges) and drawn with its roots and faulted phones marked.

use super::*;

/// One hierarchy laid out: each node's (x slot, row), children under their parent.
#[derive(Debug, Default)]
pub struct Layout {
    /// phone -> (x in leaf slots, row from the top)
    pub pos: BTreeMap<Ipv4Addr, (f64, usize)>,
    pub slots: usize,
    pub rows: usize,
}

/// Tidy layout: leaves take consecutive slots in depth-first order, a parent sits centred over
/// its children, so no edges cross. Nodes whose parent is not in the hierarchy are roots.
pub fn layout(nodes: &[TreeNode]) -> Layout {
    let present: BTreeSet<Ipv4Addr> = nodes.iter().map(|n| n.phone).collect();
    let mut kids: BTreeMap<Option<Ipv4Addr>, Vec<Ipv4Addr>> = BTreeMap::new();
    for n in nodes {
        let parent = n.parent.filter(|p| present.contains(p) && *p != n.phone);
        kids.entry(parent).or_default().push(n.phone);
    }
    for v in kids.values_mut() {
        v.sort();
        v.dedup();
    }
    let mut out = Layout::default();
    // Roots: the elected root first, then phones outside the tree (fallback, traditional).
    let mut roots = kids.get(&None).cloned().unwrap_or_default();
    let role = |a: Ipv4Addr| nodes.iter().find(|n| n.phone == a).map(|n| n.role.as_str());
    roots.sort_by_key(|&a| (role(a) != Some("root"), a));
    // Then anything a cycle kept from the roots' reach, so every phone is drawn.
    roots.extend(present.iter().copied());
    // Iterative post-order walk (bounded: each phone placed once, cycles cut).
    for r in roots {
        let mut stack = vec![(r, 0usize, false)];
        while let Some((a, row, expanded)) = stack.pop() {
            if expanded {
                let placed: Vec<f64> = kids
                    .get(&Some(a))
                    .into_iter()
                    .flatten()
                    .filter_map(|c| out.pos.get(c).map(|p| p.0))
                    .collect();
                let x = if placed.is_empty() {
                    out.slots += 1;
                    out.slots as f64 - 1.0
                } else {
                    (placed[0] + placed[placed.len() - 1]) / 2.0
                };
                out.pos.insert(a, (x, row));
                out.rows = out.rows.max(row + 1);
                continue;
            }
            if out.pos.contains_key(&a) || stack.iter().any(|s| s.0 == a && s.2) {
                continue;
            }
            stack.push((a, row, true));
            for c in kids.get(&Some(a)).into_iter().flatten().rev() {
                if !out.pos.contains_key(c) {
                    stack.push((*c, row + 1, false));
                }
            }
        }
    }
    out
}

/// Width per leaf: room for a full address; narrower (shorter labels) in huge hierarchies.
const SLOT_W: f64 = 92.0;
pub(super) const MAX_W: f64 = 30_000.0;
const ROW_H: i32 = 64;
const TREE_HEAD: i32 = 58;

/// The tree of every hierarchy of `run` (or only `only`, `MODEL/FILE`), one panel each:
/// children under their parent, each node labelled with its address and depth, roots and
/// faulted phones (fell back to the origin, or never installed) marked.
pub fn trees(run: Option<&LabReport>, only: Option<&str>) -> Result<String, PlotError> {
    let empty = BTreeMap::new();
    let all = run.map_or(&empty, |r| &r.trees);
    let chosen: Vec<(&String, &Vec<TreeNode>)> = all
        .iter()
        .filter(|(name, _)| only.is_none_or(|o| o == name.as_str()))
        .collect();
    let failed: BTreeSet<Ipv4Addr> = run
        .map(|r| {
            r.phone_times
                .iter()
                .filter(|p| p.installed_s.is_none())
                .map(|p| p.phone)
                .collect()
        })
        .unwrap_or_default();
    // A hierarchy whose phones all fetched from the origin has no tree: one line says so.
    let no_tree = |nodes: &[TreeNode]| nodes.iter().all(|n| n.role == "traditional");
    let layouts: Vec<Layout> = chosen
        .iter()
        .map(|(_, n)| {
            if no_tree(n) {
                Layout::default()
            } else {
                layout(n)
            }
        })
        .collect();
    let most = layouts.iter().map(|l| l.slots).max().unwrap_or(0).max(1);
    let slot_w = (MAX_W / most as f64).clamp(16.0, SLOT_W);
    let width = ((most as f64 * slot_w) as u32 + 40).clamp(700, MAX_W as u32 + 40);
    let heights: Vec<i32> = layouts
        .iter()
        .map(|l| TREE_HEAD + ROW_H * l.rows as i32 + 10)
        .collect();
    let height = (heights.iter().sum::<i32>() + 20).max(120) as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        if chosen.is_empty() {
            let what = match (run, only) {
                (None, _) => "no run".to_owned(),
                (Some(_), Some(o)) => format!("no hierarchy named {o}"),
                (Some(r), None) => format!("no hierarchy in the {} run", r.mode),
            };
            root.draw(&Text::new(what, (20, 40), text(16, HPos::Left)))
                .map_err(err)?;
        }
        let mut top = 10;
        for (((name, nodes), l), h) in chosen.iter().zip(&layouts).zip(&heights) {
            let mode = run.map_or(String::new(), |r| r.mode.to_string());
            let depth = nodes.iter().map(|n| n.depth).max().unwrap_or(0);
            root.draw(&Text::new(
                format!(
                    "hierarchy {name} ({mode} run): {} phones, max depth {depth}",
                    nodes.len()
                ),
                (20, top),
                text(15, HPos::Left),
            ))
            .map_err(err)?;
            if no_tree(nodes) {
                root.draw(&Text::new(
                    "every phone fetched this file from the origin: no peer tree",
                    (20, top + 26),
                    text(12, HPos::Left),
                ))
                .map_err(err)?;
                top += h;
                continue;
            }
            draw_key(&root, top + 26)?;
            let panel = Panel { top, slot_w };
            draw_edges(&root, nodes, l, &panel)?;
            draw_nodes(&root, nodes, l, &panel, &failed)?;
            top += h;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// A text style of `size` points anchored at its top, `anchor` horizontally.
fn text(size: u32, anchor: HPos) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).pos(Pos::new(anchor, VPos::Top))
}

/// Roots green, members blue, phones that fell back or never installed red.
fn role_colors() -> (RGBColor, RGBColor, RGBColor) {
    (color(2), color(0), RED)
}

/// One hierarchy's panel: its top edge and the width of a leaf slot.
struct Panel {
    top: i32,
    slot_w: f64,
}

impl Panel {
    /// Where a node laid out at (x slot, row) is drawn.
    fn at(&self, (x, row): (f64, usize)) -> (i32, i32) {
        (
            20 + (x * self.slot_w + self.slot_w / 2.0) as i32,
            self.top + TREE_HEAD + 8 + ROW_H * row as i32,
        )
    }
}

/// The key of a hierarchy's panel, at `key_y`: what each colour means.
fn draw_key(root: &Area<'_>, key_y: i32) -> Result<(), PlotError> {
    let (c_root, c_member, c_fault) = role_colors();
    let mut kx = 20;
    for (label, c) in [
        ("root", c_root),
        ("member", c_member),
        ("fell back or not installed", c_fault),
    ] {
        root.draw(&Circle::new((kx + 5, key_y + 6), 5, c.filled()))
            .map_err(err)?;
        root.draw(&Text::new(label, (kx + 14, key_y), text(12, HPos::Left)))
            .map_err(err)?;
        kx += 30 + 7 * label.len() as i32;
    }
    Ok(())
}

/// A line from each parent down to each of its children.
fn draw_edges(
    root: &Area<'_>,
    nodes: &[TreeNode],
    l: &Layout,
    panel: &Panel,
) -> Result<(), PlotError> {
    for n in nodes.iter() {
        if let (Some(p), Some(&me)) = (n.parent, l.pos.get(&n.phone))
            && let Some(&pp) = l.pos.get(&p)
        {
            // From below the parent's label to the child's top: no line crosses text.
            let (from, to) = (panel.at(pp), panel.at(me));
            root.draw(&PathElement::new(
                vec![(from.0, from.1 + 32), (to.0, to.1 - 7)],
                RGBColor(150, 150, 150).stroke_width(1),
            ))
            .map_err(err)?;
        }
    }
    Ok(())
}

/// Every phone of the hierarchy: a dot coloured by its role (red when it fell back or is in
/// `failed`), its address and depth under it, as much as the slot width allows.
fn draw_nodes(
    root: &Area<'_>,
    nodes: &[TreeNode],
    l: &Layout,
    panel: &Panel,
    failed: &BTreeSet<Ipv4Addr>,
) -> Result<(), PlotError> {
    let (c_root, c_member, c_fault) = role_colors();
    for n in nodes.iter() {
        let Some(&p) = l.pos.get(&n.phone) else {
            continue;
        };
        let (x, y) = panel.at(p);
        let faulted = n.role == "fallback" || failed.contains(&n.phone);
        let c = if faulted {
            c_fault
        } else if n.role == "root" {
            c_root
        } else {
            c_member
        };
        root.draw(&Circle::new((x, y), 7, c.filled()))
            .map_err(err)?;
        // Full labels where they fit; the last two octets and `dN` where they do not.
        let [_, _, c3, c4] = n.phone.octets();
        let (label, note) = if panel.slot_w >= 80.0 {
            let note = match (n.role.as_str(), faulted) {
                ("root", _) => format!("root, depth {}", n.depth),
                (role, true) if role != "member" => role.to_owned(),
                (_, true) => format!("depth {}, failed", n.depth),
                _ => format!("depth {}", n.depth),
            };
            (n.phone.to_string(), note)
        } else if panel.slot_w >= 34.0 {
            (format!("{c3}.{c4}"), format!("d{}", n.depth))
        } else {
            (String::new(), String::new())
        };
        root.draw(&Text::new(label, (x, y + 9), text(11, HPos::Center)))
            .map_err(err)?;
        root.draw(&Text::new(note, (x, y + 21), text(10, HPos::Center)))
            .map_err(err)?;
    }
    Ok(())
}
