-- Wireshark dissector for the pfs wire protocol, version 1 (docs/protocol.md): election and
-- tree building on UDP port 4051, chunk streams on TCP port 4051. Every message type and field
-- is named as docs/protocol.md names it; a field's filter name is `pfs.<field>` (the hierarchy
-- key's parts are `pfs.key.<part>`).
--
-- Use:  tshark -X lua_script:contrib/wireshark/pfs.lua -r lab.pcap -Y pfs
--  or copy this file into ~/.local/lib/wireshark/plugins/.

local pfs = Proto("pfs", "pfs peer firmware sharing")

local PORT = 4051
local HEADER_LEN = 8

local types = {
    [0x01] = "Advert",
    [0x02] = "Join",
    [0x03] = "Accept",
    [0x04] = "Reject",
    [0x05] = "Leave",
    [0x06] = "Heartbeat",
    [0x07] = "Lease",
    [0x10] = "Request",
    [0x11] = "Chunk",
    [0x12] = "Have",
    [0x13] = "Error",
}
local tiers = { [0] = "tentative", [1] = "fetching", [2] = "confirmed" }
local lease_ops = { [0] = "request", [1] = "grant", [2] = "refuse", [3] = "release" }
local exclusions = { [0] = "dead", [1] = "corrupt", [2] = "slow" }

local f = {
    magic = ProtoField.bytes("pfs.magic", "magic"),
    version = ProtoField.uint8("pfs.version", "version"),
    type = ProtoField.uint8("pfs.type", "type", base.HEX, types),
    type_name = ProtoField.string("pfs.type_name", "type name"),
    length = ProtoField.uint32("pfs.length", "body length"),
    key = ProtoField.none("pfs.key", "key"),
    model_len = ProtoField.uint8("pfs.key.model_len", "model_len"),
    model = ProtoField.string("pfs.key.model", "model"),
    file_len = ProtoField.uint8("pfs.key.file_len", "file_len"),
    file = ProtoField.string("pfs.key.file", "file"),
    digest = ProtoField.bytes("pfs.key.digest", "digest"),
    xid = ProtoField.uint32("pfs.xid", "xid", base.HEX),
    strength = ProtoField.uint64("pfs.strength", "strength"),
    tier = ProtoField.uint8("pfs.tier", "tier", base.DEC, tiers),
    seq = ProtoField.uint32("pfs.seq", "seq"),
    depth = ProtoField.uint8("pfs.depth", "depth"),
    free_slots = ProtoField.uint8("pfs.free_slots", "free_slots"),
    verified = ProtoField.uint64("pfs.verified", "verified"),
    max_children = ProtoField.uint8("pfs.max_children", "max_children"),
    link_kbit = ProtoField.uint32("pfs.link_kbit", "link_kbit"),
    n = ProtoField.uint8("pfs.n", "n"),
    exclude = ProtoField.ipv4("pfs.exclude", "exclude"),
    exclude_reason = ProtoField.uint8("pfs.exclude_reason", "exclude_reason", base.DEC, exclusions),
    parent = ProtoField.ipv4("pfs.parent", "parent"),
    port = ProtoField.uint16("pfs.port", "port"),
    reason = ProtoField.uint8("pfs.reason", "reason"),
    op = ProtoField.uint8("pfs.op", "op", base.DEC, lease_ops),
    hierarchy = ProtoField.uint64("pfs.hierarchy", "hierarchy id", base.HEX),
    offset = ProtoField.uint64("pfs.offset", "offset"),
    have = ProtoField.uint64("pfs.have", "have"),
    bytes = ProtoField.bytes("pfs.bytes", "bytes"),
    bytes_len = ProtoField.uint32("pfs.bytes_len", "bytes length"),
    code = ProtoField.uint16("pfs.code", "code"),
    message = ProtoField.string("pfs.message", "message"),
}
local list = {}
for _, v in pairs(f) do
    list[#list + 1] = v
end
pfs.fields = list

local e_bad = ProtoExpert.new("pfs.malformed", "malformed pfs message", expert.group.MALFORMED,
    expert.severity.ERROR)
pfs.experts = { e_bad }

-- Reads fields in order from `body` (a TvbRange), adding them to `tree`; stops (with an
-- expert note) at the first field that does not fit.
local Reader = {}
Reader.__index = Reader

local function reader(body, tree)
    return setmetatable({ body = body, tree = tree, pos = 0, ok = true }, Reader)
end

function Reader:take(n)
    if not self.ok then
        return nil
    end
    if self.pos + n > self.body:len() then
        self.ok = false
        self.tree:add_proto_expert_info(e_bad, "body too short")
        return nil
    end
    local r = self.body(self.pos, n)
    self.pos = self.pos + n
    return r
end

function Reader:field(pf, n, tree)
    local r = self:take(n)
    if r then
        (tree or self.tree):add(pf, r)
    end
    return r
end

function Reader:u8(pf, tree)
    local r = self:field(pf, 1, tree)
    return r and r:uint()
end

function Reader:u32(pf)
    return self:field(pf, 4)
end

function Reader:u64(pf)
    return self:field(pf, 8)
end

function Reader:rest(pf)
    if not self.ok then
        return nil
    end
    local n = self.body:len() - self.pos
    local r
    if n > 0 then
        r = self.body(self.pos, n)
        self.tree:add(pf, r)
    end
    self.pos = self.body:len()
    return r, n
end

function Reader:key()
    local start = self.pos
    if not self.ok then
        return
    end
    local kt = self.tree:add(f.key, self.body(start, 0))
    local ml = self:u8(f.model_len, kt)
    if not ml then
        return
    end
    local model = self:field(f.model, ml, kt)
    local fl = self:u8(f.file_len, kt)
    if not fl then
        return
    end
    local file = self:field(f.file, fl, kt)
    self:field(f.digest, 32, kt)
    if self.ok then
        kt:set_len(self.pos - start)
        kt:append_text(": " .. model:string() .. " " .. file:string())
    end
end

local bodies = {
    [0x01] = function(r)
        r:key()
        r:u32(f.xid)
        r:u64(f.strength)
        r:u8(f.tier)
        r:u32(f.seq)
        r:u8(f.depth)
        r:u8(f.free_slots)
        r:u32(f.verified)
    end,
    [0x02] = function(r)
        r:key()
        r:u32(f.xid)
        r:u8(f.max_children)
        r:u32(f.link_kbit)
        r:u32(f.verified)
        local n = r:u8(f.n)
        for _ = 1, (n or 0) do
            r:u32(f.exclude)
            r:u8(f.exclude_reason)
        end
    end,
    [0x03] = function(r)
        r:key()
        r:u32(f.xid)
        r:u32(f.parent)
        r:field(f.port, 2)
        r:u8(f.depth)
    end,
    [0x04] = function(r)
        r:key()
        r:u32(f.xid)
        r:u8(f.reason)
    end,
    [0x05] = function(r)
        r:key()
        r:u32(f.xid)
        r:u8(f.reason)
    end,
    [0x06] = function(r)
        r:key()
        r:u32(f.xid)
        r:u32(f.verified)
    end,
    [0x07] = function(r)
        r:key()
        r:u32(f.xid)
        r:u8(f.op)
    end,
    [0x10] = function(r)
        r:u64(f.hierarchy)
        r:u64(f.offset)
        r:u32(f.xid)
    end,
    [0x11] = function(r)
        r:u64(f.hierarchy)
        r:u64(f.offset)
        r:u64(f.have)
        local _, n = r:rest(f.bytes)
        if n then
            r.tree:add(f.bytes_len, n):set_generated()
        end
    end,
    [0x12] = function(r)
        r:u64(f.hierarchy)
        r:u64(f.verified)
    end,
    [0x13] = function(r)
        r:field(f.code, 2)
        r:rest(f.message)
    end,
}

-- One message at the start of `tvb` (exactly one message long); returns its length.
local function dissect_one(tvb, pinfo, tree)
    local len = tvb:len()
    local t = tree:add(pfs, tvb())
    if len < HEADER_LEN then
        t:add_proto_expert_info(e_bad, "shorter than the 8-byte header")
        return len
    end
    t:add(f.magic, tvb(0, 2))
    t:add(f.version, tvb(2, 1))
    local code = tvb(3, 1):uint()
    t:add(f.type, tvb(3, 1))
    local name = types[code] or string.format("unknown 0x%02x", code)
    t:add(f.type_name, name):set_generated()
    local body_len = tvb(4, 4):uint()
    t:add(f.length, tvb(4, 4))
    t:append_text(", " .. name)
    if tvb(0, 2):bytes():tohex() ~= "5046" or tvb(2, 1):uint() ~= 1 then
        t:add_proto_expert_info(e_bad, "wrong magic or version")
    end
    pinfo.cols.protocol = "PFS"
    local info = tostring(pinfo.cols.info)
    if info == "" or not info:find("^pfs:") then
        pinfo.cols.info = "pfs: " .. name
    else
        pinfo.cols.info:append(", " .. name)
    end
    if HEADER_LEN + body_len ~= len then
        t:add_proto_expert_info(e_bad, "body length does not match")
    end
    local body_bytes = math.min(body_len, len - HEADER_LEN)
    local body = tvb(HEADER_LEN, body_bytes)
    local d = bodies[code]
    if not d then
        t:add_proto_expert_info(e_bad, "unknown type")
        return len
    end
    local r = reader(body, t)
    d(r)
    if r.ok and r.pos ~= body:len() then
        t:add_proto_expert_info(e_bad, "trailing bytes")
    end
    return len
end

local function pdu_len(tvb, pinfo, offset)
    return HEADER_LEN + tvb(offset + 4, 4):uint()
end

local udp_table = DissectorTable.get("udp.port")
local tcp_table = DissectorTable.get("tcp.port")

function pfs.dissector(tvb, pinfo, tree)
    if pinfo.port_type == 3 then -- PT_UDP: one message per datagram
        return dissect_one(tvb, pinfo, tree)
    end
    dissect_tcp_pdus(tvb, tree, HEADER_LEN, pdu_len, dissect_one, true)
    return tvb:len()
end

udp_table:add(PORT, pfs)
tcp_table:add(PORT, pfs)
