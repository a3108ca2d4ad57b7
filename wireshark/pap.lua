--[[
Wireshark / tshark dissector for the distnat Port Allocation Protocol (PAP),
version 1, as described in docs/pap.md. Installation and the display filter
fields: docs/wireshark.md.

  tshark -X lua_script:wireshark/pap.lua -r capture.pcap -Y dnpap

Transports (docs/pap.md section 1):
  - UDP, port 7032 (a preference), plus a heuristic for other UDP ports that
    accepts only a 28-byte payload with a good checksum, version 1, type 32
    or 33 and a code defined for its direction;
  - ICMP: a PAP message *is* an ICMP message of type 32 or 33. Wireshark's
    ICMP dissector has no table of ICMP types, so this script takes IP
    protocol 1 itself, calls the ICMP dissector for every ICMP message, and
    adds a PAP tree after the ICMP one when the message is 28 bytes long with
    type 32 or 33 and version 1. Preference dnpap.icmp (default on) turns
    that off; "Decode As" IP protocol 1 -> DNPAP instead replaces ICMP
    altogether.

The filter prefix is `dnpap`: Wireshark's `pap` is PPP's Password
Authentication Protocol.

Message (28 bytes, big-endian):
  0 type | 1 code | 2-3 checksum | 4-11 body (layout by type, R, code)
  12 version | 13 flags (0x80 R = router to host) | 14-15 status
  16-19 transaction id | 20-23 router epoch | 24-27 lease time (s)
]]

local PAP_LENGTH = 28
local PAP_VERSION = 1
local PAP_UDP_PORT = 7032
local TYPE_PORTS, TYPE_SPIS = 32, 33
local FLAG_RESPONSE = 0x80

local dnpap = Proto('dnpap', 'distnat Port Allocation Protocol')

-- Value strings ------------------------------------------------------------

local TYPE_NAMES = { [TYPE_PORTS] = 'ports', [TYPE_SPIS] = 'SPIs' }

-- docs/pap.md 2.2: the meaning of a code depends on the R bit and the type.
local CODE_NAMES = {
  [0] = { [0] = 'request (below 10000)', [1] = 'request (10000 or above)', [2] = 'invalidate', [3] = 'renew' },
  [1] = { [0] = 'failure', [1] = 'success', [2] = 'withdraw' },
}
local SPI_REQUEST_CODE_NAMES = { [0] = 'request', [2] = 'invalidate', [3] = 'renew' }

local STATUS_NAMES = {
  [0] = 'ok',
  [1] = 'quota-exceeded',
  [2] = 'pool-exhausted',
  [3] = 'unknown-lease',
  [4] = 'stale-epoch',
  [5] = 'malformed',
  [6] = 'try-later',
  [7] = 'unknown-address',
}
local STATUS_TRY_LATER = 6

-- Same numbering as Wireshark's own checksum status (proto_checksum_enum_e).
local CHECKSUM_BAD, CHECKSUM_GOOD = 0, 1
local CHECKSUM_STATUS_NAMES = { [CHECKSUM_BAD] = 'Bad', [CHECKSUM_GOOD] = 'Good' }

-- [type][R][code] -> the codec's `kind` (docs/pap.md section 3).
local KIND = {
  [TYPE_PORTS] = {
    [0] = { [0] = 'port-request', [1] = 'port-request', [2] = 'port-invalidate', [3] = 'port-renew' },
    [1] = { [0] = 'port-response', [1] = 'port-response', [2] = 'port-withdraw' },
  },
  [TYPE_SPIS] = {
    [0] = { [0] = 'spi-request', [2] = 'spi-invalidate', [3] = 'spi-renew' },
    [1] = { [0] = 'spi-response', [1] = 'spi-response', [2] = 'spi-withdraw' },
  },
}

-- Fields -------------------------------------------------------------------

local f = {
  type = ProtoField.uint8('dnpap.type', 'Type', base.DEC, TYPE_NAMES),
  code = ProtoField.uint8('dnpap.code', 'Code', base.DEC),
  checksum = ProtoField.uint16('dnpap.checksum', 'Checksum', base.HEX),
  checksum_status = ProtoField.uint8('dnpap.checksum.status', 'Checksum Status', base.DEC, CHECKSUM_STATUS_NAMES),
  checksum_calculated = ProtoField.uint16('dnpap.checksum_calculated', 'Calculated Checksum', base.HEX),

  ports_requested = ProtoField.uint8('dnpap.ports.requested', 'Ports requested', base.DEC, nil, nil,
    '0 = the router default block'),
  ports_high = ProtoField.bool('dnpap.ports.high', 'Prefers ports', base.NONE, { '10000 or above', 'below 10000' }),
  port = ProtoField.uint16('dnpap.port', 'Port', base.DEC, nil, nil, 'any port of the block to give back'),
  ports_lowest = ProtoField.uint16('dnpap.ports.lowest', 'Lowest port'),
  ports_count = ProtoField.uint8('dnpap.ports.count', 'Number of ports'),
  ports_last = ProtoField.uint16('dnpap.ports.last', 'Last port'),
  address = ProtoField.ipv4('dnpap.address', 'Shared address', '0.0.0.0 = the router\'s first'),

  spi_requested = ProtoField.uint16('dnpap.spi.requested', 'SPIs requested', base.DEC, nil, nil,
    '0 = the router default block'),
  spi = ProtoField.uint32('dnpap.spi', 'SPI', base.HEX_DEC, nil, nil, 'any SPI of the block to give back'),
  spi_lowest = ProtoField.uint32('dnpap.spi.lowest', 'Lowest SPI', base.HEX_DEC),
  spi_count = ProtoField.uint16('dnpap.spi.count', 'Number of SPIs'),
  spi_last = ProtoField.uint32('dnpap.spi.last', 'Last SPI', base.HEX_DEC),

  body = ProtoField.bytes('dnpap.body', 'Body'),
  unused = ProtoField.bytes('dnpap.unused', 'Unused'),

  version = ProtoField.uint8('dnpap.version', 'Version'),
  flags = ProtoField.uint8('dnpap.flags', 'Flags', base.HEX),
  response = ProtoField.bool('dnpap.response', 'Response', 8, { 'router to host', 'host to router' }, FLAG_RESPONSE),
  reserved = ProtoField.uint8('dnpap.flags.reserved', 'Reserved', base.HEX, nil, 0x7f),
  status = ProtoField.uint16('dnpap.status', 'Status', base.DEC, STATUS_NAMES),
  txid = ProtoField.uint32('dnpap.txid', 'Transaction ID', base.HEX),
  epoch = ProtoField.uint32('dnpap.epoch', 'Router epoch', base.HEX),
  lease = ProtoField.uint32('dnpap.lease', 'Lease time', base.DEC, nil, nil, 'seconds'),

  kind = ProtoField.string('dnpap.kind', 'Message'),
  success = ProtoField.bool('dnpap.success', 'Success'),
  response_in = ProtoField.framenum('dnpap.response_in', 'Response in', base.NONE, frametype.RESPONSE),
  response_to = ProtoField.framenum('dnpap.response_to', 'Request in', base.NONE, frametype.REQUEST),
  retransmission = ProtoField.framenum('dnpap.retransmission', 'Retransmission of', base.NONE, frametype.REQUEST),
  time = ProtoField.relative_time('dnpap.time', 'Time since request'),
}
dnpap.fields = f

local e = {
  checksum_bad = ProtoExpert.new('dnpap.checksum.bad', 'Bad checksum', expert.group.CHECKSUM, expert.severity.ERROR),
  length_bad = ProtoExpert.new('dnpap.length.bad', 'Not a PAP message: PAP messages are 28 bytes',
    expert.group.MALFORMED, expert.severity.ERROR),
  version_bad = ProtoExpert.new('dnpap.version.bad', 'Unknown version: receivers drop it', expert.group.PROTOCOL,
    expert.severity.ERROR),
  type_bad = ProtoExpert.new('dnpap.type.bad', 'Unknown type: receivers drop it', expert.group.PROTOCOL,
    expert.severity.ERROR),
  code_bad = ProtoExpert.new('dnpap.code.bad', 'Code not defined for this type and direction',
    expert.group.PROTOCOL, expert.severity.WARN),
  reserved = ProtoExpert.new('dnpap.reserved.nonzero', 'Reserved or unused bits set (ignored by v1 receivers)',
    expert.group.PROTOCOL, expert.severity.NOTE),
  failure = ProtoExpert.new('dnpap.failure', 'Failure response', expert.group.RESPONSE_CODE, expert.severity.NOTE),
  retransmission = ProtoExpert.new('dnpap.retransmission.expert', 'Retransmitted request', expert.group.SEQUENCE,
    expert.severity.NOTE),
  repeated_answer = ProtoExpert.new('dnpap.repeated_answer', 'Repeated answer to an answered transaction',
    expert.group.SEQUENCE, expert.severity.NOTE),
}
dnpap.experts = e

dnpap.prefs.udp_port = Pref.uint('UDP port', PAP_UDP_PORT, 'The UDP port of the router PAP server')
dnpap.prefs.icmp = Pref.bool('Dissect ICMP types 32 and 33 as PAP', true,
  'PAP over ICMP (the patent transport): 28-byte ICMP messages of type 32 or 33 with version 1')

-- Checks -------------------------------------------------------------------

-- RFC 1071 one's complement sum of 16-bit words, folded to 16 bits.
local function ones_sum(tvb, length)
  local sum = 0
  for i = 0, length - 2, 2 do
    sum = sum + tvb(i, 2):uint()
  end
  if length % 2 == 1 then
    sum = sum + tvb(length - 1, 1):uint() * 256
  end
  while sum > 0xffff do
    sum = (sum % 0x10000) + math.floor(sum / 0x10000)
  end
  return sum
end

-- The kind of a 28-byte message, or nil when the receiver would drop it
-- (docs/pap.md section 5, checks 3-5; the checksum is reported separately).
local function kind_of(tvb)
  if tvb:len() ~= PAP_LENGTH or tvb(12, 1):uint() ~= PAP_VERSION then
    return nil
  end
  local by_type = KIND[tvb(0, 1):uint()]
  local by_r = by_type and by_type[tvb(13, 1):bitfield(0, 1)]
  return by_r and by_r[tvb(1, 1):uint()]
end

local function looks_like_pap(tvb, need_checksum)
  return kind_of(tvb) ~= nil and (not need_checksum or ones_sum(tvb, PAP_LENGTH) == 0xffff)
end

-- Transactions -------------------------------------------------------------
-- A transaction is (host address, type, transaction id); the host is the
-- source of R=0 messages and the destination of R=1 ones. Filled on the first
-- pass; later passes (the GUI, tshark -2) read the per-frame results.

local transactions, frame_notes

local function forget_transactions()
  transactions = {}
  frame_notes = {}
end
forget_transactions()
-- A new capture file (or a reload) starts with no transactions.
dnpap.init = forget_transactions

local function track(tvb, pinfo, kind, response, txid)
  local number = pinfo.number
  if pinfo.visited or frame_notes[number] then
    return frame_notes[number]
  end
  local note = {}
  frame_notes[number] = note
  -- A withdraw (and anything with transaction id 0 from the router) answers nothing.
  if kind:sub(-8) == 'withdraw' then
    return note
  end
  local host = tostring(response and pinfo.dst or pinfo.src)
  local key = host .. '/' .. tvb(0, 1):uint() .. '/' .. txid
  local tx = transactions[key]
  if not response then
    local bytes = tvb:bytes():tohex()
    if tx and tx.bytes == bytes and not tx.response then
      note.retransmission = tx.request
      tx.frames[#tx.frames + 1] = note
    else
      -- A remembered id with other content is a new transaction (docs/pap.md 6.1).
      transactions[key] = { request = number, time = pinfo.abs_ts, bytes = bytes, frames = { note } }
    end
  elseif tx then
    note.response_to = tx.request
    note.time = pinfo.abs_ts - tx.time
    if tx.response then
      note.repeated = tx.response
    else
      tx.response = number
      for _, n in ipairs(tx.frames) do
        n.response_in = number
      end
    end
  end
  return note
end

local function add_nstime(tree, field, range, seconds)
  local secs = math.floor(seconds)
  local nsecs = math.floor((seconds - secs) * 1e9 + 0.5)
  if nsecs >= 1e9 then
    secs, nsecs = secs + 1, nsecs - 1e9
  end
  return tree:add(field, range, NSTime.new(secs, nsecs))
end

local function generated(item)
  item:set_generated()
  return item
end

-- Body ---------------------------------------------------------------------

-- Adds the unused bytes [from, to] and notes them when not zero.
local function add_unused(tree, tvb, from, to)
  local range = tvb(from, to - from + 1)
  for i = 0, range:len() - 1 do
    if range(i, 1):uint() ~= 0 then
      tree:add(f.unused, range):add_proto_expert_info(e.reserved, 'Unused bytes are not zero')
      return
    end
  end
end

local function add_port_block(tree, tvb)
  local lowest, count = tvb(4, 2):uint(), tvb(6, 1):uint()
  tree:add(f.ports_lowest, tvb(4, 2))
  tree:add(f.ports_count, tvb(6, 1))
  if count > 0 then
    generated(tree:add(f.ports_last, tvb(4, 3), lowest + count - 1))
  end
  add_unused(tree, tvb, 7, 7)
  if count > 0 then
    return string.format('ports %d-%d', lowest, lowest + count - 1)
  end
  -- A failed request's answer names nothing; a failed invalidate's names its port.
  return lowest > 0 and string.format('port %d', lowest) or nil
end

local function spi_text(lowest, count)
  if count == 0 then
    return lowest > 0 and string.format('SPI 0x%08x', lowest) or nil
  end
  return string.format('SPIs 0x%08x-0x%08x', lowest, lowest + count - 1)
end

-- Adds the body fields of `kind`; returns a summary for the Info column.
local function add_body(tree, tvb, kind)
  if kind:sub(1, 5) == 'port-' and tvb(8, 4):uint() ~= 0 then
    -- docs/pap.md 2: a port message may name one of the router's shared addresses (0: its first).
    tree:add(f.address, tvb(8, 4))
  end
  if kind == 'port-request' then
    local n = tvb(4, 1):uint()
    tree:add(f.ports_requested, tvb(4, 1))
    generated(tree:add(f.ports_high, tvb(1, 1), tvb(1, 1):uint() == 1))
    add_unused(tree, tvb, 5, 7)
    return string.format('%s ports, %s', n == 0 and 'default' or tostring(n),
      tvb(1, 1):uint() == 1 and '10000 or above' or 'below 10000')
  elseif kind == 'port-invalidate' then
    tree:add(f.port, tvb(4, 2))
    add_unused(tree, tvb, 6, 7)
    return string.format('port %d', tvb(4, 2):uint())
  elseif kind:sub(1, 5) == 'port-' then
    return add_port_block(tree, tvb)
  elseif kind == 'spi-request' then
    local n = tvb(4, 2):uint()
    tree:add(f.spi_requested, tvb(4, 2))
    add_unused(tree, tvb, 6, 11)
    return string.format('%s SPIs', n == 0 and 'default' or tostring(n))
  elseif kind == 'spi-invalidate' then
    tree:add(f.spi, tvb(4, 4))
    add_unused(tree, tvb, 8, 11)
    return string.format('SPI 0x%08x', tvb(4, 4):uint())
  elseif kind == 'spi-response' then
    -- FIG. 5A: count first, lowest SPI at offset 8.
    local count, lowest = tvb(4, 2):uint(), tvb(8, 4):uint()
    tree:add(f.spi_count, tvb(4, 2))
    add_unused(tree, tvb, 6, 7)
    tree:add(f.spi_lowest, tvb(8, 4))
    if count > 0 then
      generated(tree:add(f.spi_last, tvb(4, 8), lowest + count - 1))
    end
    return spi_text(lowest, count)
  else -- spi-renew, spi-withdraw: the renew layout, lowest SPI where invalidate has its SPI
    local lowest, count = tvb(4, 4):uint(), tvb(8, 2):uint()
    tree:add(f.spi_lowest, tvb(4, 4))
    tree:add(f.spi_count, tvb(8, 2))
    if count > 0 then
      generated(tree:add(f.spi_last, tvb(4, 6), lowest + count - 1))
    end
    add_unused(tree, tvb, 10, 11)
    return spi_text(lowest, count)
  end
end

-- The message --------------------------------------------------------------

local function code_name(t, r, c)
  if t == TYPE_SPIS and r == 0 then
    return SPI_REQUEST_CODE_NAMES[c]
  end
  return CODE_NAMES[r] and CODE_NAMES[r][c]
end

local function add_checksum(tree, tvb)
  local item = tree:add(f.checksum, tvb(2, 2))
  local good = ones_sum(tvb, PAP_LENGTH) == 0xffff
  generated(tree:add(f.checksum_status, tvb(2, 2), good and CHECKSUM_GOOD or CHECKSUM_BAD))
  if good then
    item:append_text(' [correct]')
    return true
  end
  -- The value the field should hold: the complement of the sum with it zero.
  local sum = ones_sum(tvb, PAP_LENGTH) - tvb(2, 2):uint()
  if sum < 0 then
    sum = sum + 0xffff
  end
  local want = 0xffff - sum
  item:append_text(string.format(' [incorrect, should be 0x%04x]', want))
  generated(tree:add(f.checksum_calculated, tvb(2, 2), want))
  item:add_proto_expert_info(e.checksum_bad, string.format('Bad checksum [should be 0x%04x]', want))
  return false
end

local function add_extension(tree, tvb)
  local version = tvb(12, 1):uint()
  local vitem = tree:add(f.version, tvb(12, 1))
  if version ~= PAP_VERSION then
    vitem:add_proto_expert_info(e.version_bad)
  end
  local r = tvb(13, 1):bitfield(0, 1)
  local flags = tree:add(f.flags, tvb(13, 1))
  flags:append_text(r == 1 and ' (router to host)' or ' (host to router)')
  flags:add(f.response, tvb(13, 1))
  local reserved = flags:add(f.reserved, tvb(13, 1))
  if tvb(13, 1):bitfield(1, 7) ~= 0 then
    reserved:add_proto_expert_info(e.reserved, 'Reserved flag bits are set')
  end
  tree:add(f.status, tvb(14, 2))
  tree:add(f.txid, tvb(16, 4))
  tree:add(f.epoch, tvb(20, 4))
  local lease = tree:add(f.lease, tvb(24, 4))
  lease:append_text(' s')
end

local function add_transaction(tree, tvb, note)
  if not note then
    return
  end
  if note.response_in then
    generated(tree:add(f.response_in, tvb(16, 4), note.response_in))
  end
  if note.retransmission then
    generated(tree:add(f.retransmission, tvb(16, 4), note.retransmission)):add_proto_expert_info(e.retransmission,
      'Retransmission of the request in frame ' .. note.retransmission)
  end
  if note.response_to then
    generated(tree:add(f.response_to, tvb(16, 4), note.response_to))
    generated(add_nstime(tree, f.time, tvb(16, 4), note.time))
  end
  if note.repeated then
    tree:add_proto_expert_info(e.repeated_answer, 'Repeated answer; first answered in frame ' .. note.repeated)
  end
end

--[[
Dissects one PAP message (`tvb` is exactly the UDP payload or the ICMP
message). Messages a receiver would drop are still shown, with the reason as
expert info, since on the PAP port or type they are most likely PAP that went
wrong. Returns the Info column text.
]]
local function dissect_message(tvb, pinfo, tree, transport, quoted)
  local length = tvb:len()
  local root = tree:add(dnpap, tvb(), 'distnat Port Allocation Protocol')
  if length ~= PAP_LENGTH then
    root:add_proto_expert_info(e.length_bad, string.format('%d bytes: PAP messages are 28 bytes', length))
    if length > 0 then
      root:add(f.body, tvb())
    end
    return string.format('not PAP: %d bytes', length)
  end

  local t, c, r = tvb(0, 1):uint(), tvb(1, 1):uint(), tvb(13, 1):bitfield(0, 1)
  local kind = kind_of(tvb)
  local titem = root:add(f.type, tvb(0, 1))
  if not TYPE_NAMES[t] then
    titem:add_proto_expert_info(e.type_bad)
  end
  local citem = root:add(f.code, tvb(1, 1))
  local cname = TYPE_NAMES[t] and code_name(t, r, c)
  if cname then
    citem:append_text(' (' .. cname .. ')')
  elseif TYPE_NAMES[t] then
    citem:add_proto_expert_info(e.code_bad)
  end
  local checksum_good = add_checksum(root, tvb)

  local summary
  if kind then
    summary = add_body(root, tvb, kind)
  else
    root:add(f.body, tvb(4, 8))
  end
  add_extension(root, tvb)

  local txid = tvb(16, 4):uint()
  local status = tvb(14, 2):uint()
  local info
  if kind then
    generated(root:add(f.kind, tvb(0, 2), kind))
    local outcome = ''
    if r == 1 and c < 2 then
      generated(root:add(f.success, tvb(1, 1), c == 1))
      outcome = c == 1 and ' success' or ' failure'
      if c == 0 then
        local why = STATUS_NAMES[status] or ('status ' .. status)
        outcome = outcome .. ' ' .. why
        root:add_proto_expert_info(e.failure, 'Failure: ' .. why)
      end
    end
    summary = summary and (', ' .. summary) or ''
    info = string.format('%s%s%s, txid 0x%08x', kind, outcome, summary, txid)
    if r == 1 and tvb(24, 4):uint() > 0 then
      -- docs/pap.md 4: in a try-later failure the lease time field is the wait, not a lease.
      local what = (c == 0 and status == STATUS_TRY_LATER) and 'retry in' or 'lease'
      info = info .. string.format(', %s %d s', what, tvb(24, 4):uint())
    end
    root:append_text(string.format(', %s%s%s', kind, outcome, summary))
    -- Receivers drop what fails the checksum: it neither starts nor answers a transaction.
    if checksum_good and not quoted then
      add_transaction(root, tvb, track(tvb, pinfo, kind, r == 1, txid))
    end
  else
    info = string.format('not PAP v1: type %d code %d version %d, txid 0x%08x', t, c, tvb(12, 1):uint(), txid)
    root:append_text(', dropped by receivers')
  end
  root:append_text(' (' .. transport .. (quoted and ', quoted in an ICMP error' or '') .. ')')
  return info
end

local function set_columns(pinfo, info)
  pinfo.cols.protocol = 'DNPAP'
  pinfo.cols.info = info
end

-- ICMP calls back into IP for the packet an error message quotes, and so into
-- the ICMP wrapper below and the UDP port table: a depth above 0 means that
-- what is being dissected is quoted in an ICMP error.
local icmp_depth = 0

-- On the PAP port (or Decode As): whatever is there is shown as PAP. Ports
-- are 0 unless a transport dissector ran, i.e. under Decode As IP protocol 1.
function dnpap.dissector(tvb, pinfo, tree)
  local transport = (pinfo.src_port ~= 0 or pinfo.dst_port ~= 0) and 'UDP' or 'ICMP'
  set_columns(pinfo, dissect_message(tvb, pinfo, tree, transport, icmp_depth > 0))
  return tvb:len()
end

-- UDP on another port: only what a receiver would accept.
local function heuristic_udp(tvb, pinfo, tree)
  if not looks_like_pap(tvb, true) then
    return false
  end
  set_columns(pinfo, dissect_message(tvb, pinfo, tree, 'UDP', icmp_depth > 0))
  return true
end
dnpap:register_heuristic('udp', heuristic_udp)

-- ICMP transport ------------------------------------------------------------
-- Wireshark's ICMP dissector has no table of ICMP types (its heuristic list
-- is tried on echo payloads only), so this dissector takes IP protocol 1,
-- lets the ICMP dissector do all of its work first, and then adds PAP beside
-- it for a 28-byte type 32/33 version 1 message. A post-dissector reading the
-- ICMP fields back from the tree would leave ICMP's registration alone, but
-- sees nothing when tshark builds no tree (the first pass of `tshark -2`),
-- where transactions are matched.

local ip_proto = DissectorTable.get('ip.proto')
local icmp = ip_proto:get_dissector(1)
local dnpap_icmp = Proto('dnpap_icmp', 'ICMP, with distnat PAP for types 32 and 33')

local function is_icmp_pap(tvb)
  if tvb:len() ~= PAP_LENGTH then
    return false
  end
  local t = tvb(0, 1):uint()
  return (t == TYPE_PORTS or t == TYPE_SPIS) and tvb(12, 1):uint() == PAP_VERSION
end

function dnpap_icmp.dissector(tvb, pinfo, tree)
  local quoted = icmp_depth > 0
  icmp_depth = icmp_depth + 1
  -- Dissector:call shows a malformed packet itself and then raises "Malformed
  -- frame"; the depth must be restored either way.
  local ok, consumed = pcall(icmp.call, icmp, tvb, pinfo, tree)
  icmp_depth = icmp_depth - 1
  if not ok then
    return tvb:len()
  end
  if dnpap.prefs.icmp and is_icmp_pap(tvb) then
    local info = dissect_message(tvb, pinfo, tree, 'ICMP', quoted)
    if not quoted then
      set_columns(pinfo, info)
    end
  end
  return consumed
end

-- Registration -------------------------------------------------------------

local udp_table = DissectorTable.get('udp.port')
local registered_port = dnpap.prefs.udp_port
udp_table:add(registered_port, dnpap)
if icmp then
  ip_proto:add(1, dnpap_icmp)
end
ip_proto:add_for_decode_as(dnpap)

function dnpap.prefs_changed()
  if dnpap.prefs.udp_port ~= registered_port then
    udp_table:remove(registered_port, dnpap)
    registered_port = dnpap.prefs.udp_port
    udp_table:add(registered_port, dnpap)
  end
end
