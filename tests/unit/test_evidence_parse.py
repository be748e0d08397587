"""lab.evidence's parsers on text recorded from this kind of host (Linux 6.18, cgroup v1 with the
cgroupfs driver): a container's cgroup files, /proc/<pid>/net of a container under load, and
/proc/<tid>/status of a thread in a container's pid namespace."""
import pytest

from lab.evidence import (EvidenceSampler, _columns, _PerTask, _rates, _added_rows, behind,
                          cgroup_mounts, count_tcp_states, listeners_in, net_counters,
                          parse_cpu_list, parse_keyed, parse_pid_stat, parse_proc_stat,
                          parse_sockstat, parse_status, parse_tcp_line, pid_advance,
                          SERIES_COLUMNS)

# the first 1,200 bytes of /proc/<pid>/net/tcp of a threaded server's container under wrk: the
# listening socket first (rx_queue 9: its accept queue), then TIME_WAIT sockets; cut mid-line
# as a partial read leaves it
TCP_HEAD = r"""  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     
   0: 00000000:1F40 00000000:0000 0A 00000000:00000009 00:00000000 00000000 10001        0 27426514 10 000000007a154def 100 0 0 10 0                 
   1: 0100007F:1F40 0100007F:E598 06 00000000:00000000 03:00001720 00000000     0        0 0 3 0000000070b5f7d5                                      
   2: 0100007F:1F40 0100007F:A46C 06 00000000:00000000 03:0000176B 00000000     0        0 0 3 00000000bb19758a                                      
   3: 0100007F:1F40 0100007F:9B6C 06 00000000:00000000 03:0000175D 00000000     0        0 0 3 00000000ffa9b3c0                                      
   4: 0100007F:1F40 0100007F:93D4 06 00000000:00000000 03:0000174C 00000000     0        0 0 3 000000005b7a4bc7                                      
   5: 0100007F:1F40 0100007F:E4C6 06 00000000:00000000 03:0000171F 00000000     0        0 0 3 00000000df61452e                                      
   6: 0100007F:1F40 0100007F:A24A 06 00000000:00000000 03:00001768 00000000     0        0 0 3 0000000015986067                                      
"""

# /proc/net/tcp6 with a listener on ::1 and one connection to it, not yet accepted
TCP6 = r"""  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:D88F 00000000000000000000000000000000:0000 0A 00000000:00000001 00:00000000 00000000     0        0 27363017 2 0000000029dac29b 100 0 0 10 0
   1: 00000000000000000000000001000000:D82A 00000000000000000000000001000000:D88F 01 00000000:00000000 00:00000000 00000000     0        0 27363018 2 000000001ac530cf 20 0 0 10 -1
   2: 00000000000000000000000001000000:D88F 00000000000000000000000001000000:D82A 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000053addd48 20 0 0 10 -1
"""

NETSTAT = r"""TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed EmbryonicRsts PruneCalled RcvPruned OfoPruned OutOfWindowIcmps LockDroppedIcmps ArpFilter TW TWRecycled TWKilled PAWSActive PAWSEstab BeyondWindow TSEcrRejected PAWSOldAck PAWSTimewait DelayedACKs DelayedACKLocked DelayedACKLost ListenOverflows ListenDrops TCPHPHits TCPPureAcks TCPHPAcks TCPRenoRecovery TCPSackRecovery TCPSACKReneging TCPSACKReorder TCPRenoReorder TCPTSReorder TCPFullUndo TCPPartialUndo TCPDSACKUndo TCPLossUndo TCPLostRetransmit TCPRenoFailures TCPSackFailures TCPLossFailures TCPFastRetrans TCPSlowStartRetrans TCPTimeouts TCPLossProbes TCPLossProbeRecovery TCPRenoRecoveryFail TCPSackRecoveryFail TCPRcvCollapsed TCPBacklogCoalesce TCPDSACKOldSent TCPDSACKOfoSent TCPDSACKRecv TCPDSACKOfoRecv TCPAbortOnData TCPAbortOnClose TCPAbortOnMemory TCPAbortOnTimeout TCPAbortOnLinger TCPAbortFailed TCPMemoryPressures TCPMemoryPressuresChrono TCPSACKDiscard TCPDSACKIgnoredOld TCPDSACKIgnoredNoUndo TCPSpuriousRTOs TCPMD5NotFound TCPMD5Unexpected TCPMD5Failure TCPSackShifted TCPSackMerged TCPSackShiftFallback TCPBacklogDrop PFMemallocDrop TCPMinTTLDrop TCPDeferAcceptDrop IPReversePathFilter TCPTimeWaitOverflow TCPReqQFullDoCookies TCPReqQFullDrop TCPRetransFail TCPRcvCoalesce TCPOFOQueue TCPOFODrop TCPOFOMerge TCPChallengeACK TCPSYNChallenge TCPFastOpenActive TCPFastOpenActiveFail TCPFastOpenPassive TCPFastOpenPassiveFail TCPFastOpenListenOverflow TCPFastOpenCookieReqd TCPFastOpenBlackhole TCPSpuriousRtxHostQueues BusyPollRxPackets TCPAutoCorking TCPFromZeroWindowAdv TCPToZeroWindowAdv TCPWantZeroWindowAdv TCPSynRetrans TCPOrigDataSent TCPHystartTrainDetect TCPHystartTrainCwnd TCPHystartDelayDetect TCPHystartDelayCwnd TCPACKSkippedSynRecv TCPACKSkippedPAWS TCPACKSkippedSeq TCPACKSkippedFinWait2 TCPACKSkippedTimeWait TCPACKSkippedChallenge TCPWinProbe TCPKeepAlive TCPMTUPFail TCPMTUPSuccess TCPDelivered TCPDeliveredCE TCPAckCompressed TCPZeroWindowDrop TCPRcvQDrop TCPWqueueTooBig TCPFastOpenPassiveAltKey TcpTimeoutRehash TcpDuplicateDataRehash TCPDSACKRecvSegs TCPDSACKIgnoredDubious TCPMigrateReqSuccess TCPMigrateReqFailure TCPPLBRehash TCPAORequired TCPAOBad TCPAOKeyNotFound TCPAOGood TCPAODroppedIcmps
TcpExt: 18144 46897 14 0 0 0 0 0 0 0 1921951 268791 0 0 0 0 0 0 0 30464 7 401 49876 49876 2670525 6853661 3468329 0 23 0 5 0 0 4 0 1 0 16319 0 0 0 22 0 34213 6513 1295 0 0 0 10534 401 0 377 0 827 1919 0 350 0 0 0 0 0 0 374 0 0 0 0 0 1 26 0 0 0 0 0 0 18279 0 0 1337756 27 0 0 184 184 0 0 0 0 0 0 0 2 0 680 1030 1030 680 13693 10702605 0 0 0 0 0 0 0 0 0 0 35 39 0 0 12587813 0 0 0 0 0 0 33679 0 377 0 0 0 0 0 0 0 0 0
IpExt: InNoRoutes InTruncatedPkts InMcastPkts OutMcastPkts InBcastPkts OutBcastPkts InOctets OutOctets InMcastOctets OutMcastOctets InBcastOctets OutBcastOctets InCsumErrors InNoECTPkts InECT1Pkts InECT0Pkts InCEPkts ReasmOverlaps
IpExt: 0 0 0 309 0 0 12237568212 11242851647 0 12360 0 0 0 23117048 0 0 0 0
MPTcpExt: MPCapableSYNRX MPCapableSYNTX MPCapableSYNACKRX MPCapableACKRX MPCapableFallbackACK MPCapableFallbackSYNACK MPCapableSYNTXDrop MPCapableSYNTXDisabled MPCapableEndpAttempt MPFallbackTokenInit MPTCPRetrans MPJoinNoTokenFound MPJoinSynRx MPJoinSynBackupRx MPJoinSynAckRx MPJoinSynAckBackupRx MPJoinSynAckHMacFailure MPJoinAckRx MPJoinAckHMacFailure MPJoinRejected MPJoinSynTx MPJoinSynTxCreatSkErr MPJoinSynTxBindErr MPJoinSynTxConnectErr DSSNotMatching DSSCorruptionFallback DSSCorruptionReset InfiniteMapTx InfiniteMapRx DSSNoMatchTCP DataCsumErr OFOQueueTail OFOQueue OFOMerge NoDSSInWindow DuplicateData AddAddr AddAddrTx AddAddrTxDrop EchoAdd EchoAddTx EchoAddTxDrop PortAdd AddAddrDrop MPJoinPortSynRx MPJoinPortSynAckRx MPJoinPortAckRx MismatchPortSynRx MismatchPortAckRx RmAddr RmAddrDrop RmAddrTx RmAddrTxDrop RmSubflow MPPrioTx MPPrioRx MPFailTx MPFailRx MPFastcloseTx MPFastcloseRx MPRstTx MPRstRx SubflowStale SubflowRecover SndWndShared RcvWndShared RcvWndConflictUpdate RcvWndConflict MPCurrEstab Blackhole MPCapableDataFallback MD5SigFallback DssFallback SimultConnectFallback FallbackFailed WinProbe
MPTcpExt: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
"""

SNMP = r"""Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos InDiscards InDelivers OutRequests OutDiscards OutNoRoutes ReasmTimeout ReasmReqds ReasmOKs ReasmFails FragOKs FragFails FragCreates OutTransmits
Ip: 1 64 23111688 0 0 5586 0 0 23106102 23100035 0 0 0 0 0 0 0 0 0 23105621
Icmp: InMsgs InErrors InCsumErrors InDestUnreachs InTimeExcds InParmProbs InSrcQuenchs InRedirects InEchos InEchoReps InTimestamps InTimestampReps InAddrMasks InAddrMaskReps OutMsgs OutErrors OutRateLimitGlobal OutRateLimitHost OutDestUnreachs OutTimeExcds OutParmProbs OutSrcQuenchs OutRedirects OutEchos OutEchoReps OutTimestamps OutTimestampReps OutAddrMasks OutAddrMaskReps
Icmp: 1 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
IcmpMsg: InType3
IcmpMsg: 1
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 2309140 1874452 415813 3537 0 23105324 23066833 40380 153 422183 0
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 777 0 0 778 0 0 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 0 0 0 0 0
"""

SOCKSTAT = r"""sockets: used 63
TCP: inuse 62 orphan 29 tw 1717 alloc 98 mem 169
UDP: inuse 0 mem 0
UDPLITE: inuse 0
RAW: inuse 0
FRAG: inuse 0 memory 0
"""

SOCKSTAT6 = r"""TCP6: inuse 0
UDP6: inuse 0
UDPLITE6: inuse 0
RAW6: inuse 0
FRAG6: inuse 0 memory 0
"""

CPUACCT_STAT = r"""user 42
system 65
"""

CPU_STAT = r"""nr_periods 0
nr_throttled 0
throttled_time 0
nr_bursts 0
burst_time 0
"""

MEMORY_STAT = r"""cache 21622784
rss 21139456
rss_huge 0
shmem 0
mapped_file 10436608
dirty 0
writeback 0
workingset_refault_anon 0
workingset_refault_file 0
swap 0
swapcached 0
pgpgin 13326
pgpgout 2879
pgfault 8737
pgmajfault 154
inactive_anon 21131264
active_anon 8192
inactive_file 21585920
active_file 36864
unevictable 0
hierarchical_memory_limit 9223372036854771712
hierarchical_memsw_limit 9223372036854771712
total_cache 21622784
total_rss 21139456
total_rss_huge 0
total_shmem 0
total_mapped_file 10436608
total_dirty 0
total_writeback 0
total_workingset_refault_anon 0
total_workingset_refault_file 0
total_swap 0
total_swapcached 0
total_pgpgin 13326
total_pgpgout 2879
total_pgfault 8737
total_pgmajfault 154
total_inactive_anon 21131264
total_active_anon 8192
total_inactive_file 21585920
total_active_file 36864
total_unevictable 0
"""

# a worker thread of the prethreaded server in its container: host tid 29386, 11 in the container
STATUS_THREAD = r"""Name:	python3
Umask:	0022
State:	S (sleeping)
Tgid:	29379
Ngid:	0
Pid:	29386
PPid:	29350
TracerPid:	0
Uid:	10001	10001	10001	10001
Gid:	10001	10001	10001	10001
FDSize:	64
Groups:	10001 
NStgid:	29379	7
NSpid:	29386	11
NSpgid:	29379	7
NSsid:	29350	1
Kthread:	0
VmPeak:	  366528 kB
VmSize:	  301008 kB
VmLck:	       0 kB
VmPin:	       0 kB
VmHWM:	   30184 kB
VmRSS:	   30184 kB
RssAnon:	   20096 kB
RssFile:	   10088 kB
RssShmem:	       0 kB
VmData:	   23688 kB
VmStk:	     132 kB
VmExe:	    2768 kB
VmLib:	    5704 kB
VmPTE:	     132 kB
VmSwap:	       0 kB
HugetlbPages:	       0 kB
CoreDumping:	0
THP_enabled:	1
untag_mask:	0xffffffffffffffff
Threads:	5
SigQ:	0/96365
SigPnd:	0000000000000000
ShdPnd:	0000000000000000
SigBlk:	0000000000000000
SigIgn:	0000000001001000
SigCgt:	0000000100004002
CapInh:	0000000000000000
CapPrm:	0000000000000000
CapEff:	0000000000000000
CapBnd:	00000000a80425fb
CapAmb:	0000000000000000
NoNewPrivs:	0
Seccomp:	2
Seccomp_filters:	1
Speculation_Store_Bypass:	vulnerable
SpeculationIndirectBranch:	always enabled
Cpus_allowed:	3
Cpus_allowed_list:	0-1
Mems_allowed:	00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000001
Mems_allowed_list:	0
voluntary_ctxt_switches:	1
nonvoluntary_ctxt_switches:	4
"""

# /proc/<pid>/stat of a program named "x) y (z"
STAT_ODD_COMM = r"""25596 (x) y (z) S 21999 21999 7508 0 -1 4194304 131 0 0 0 0 0 0 0 20 0 1 0 536042 2990080 410 18446744073709551615 94156680646656 94156680664585 140736526407648 0 0 0 0 6 0 1 0 0 17 1 0 0 0 0 0 94156680678672 94156680679936 94157286486016 140736526408392 140736526408413 140736526408413 140736526409701 0
"""

PROC_STAT = r"""cpu  421994 2340 225303 328296 2604 0 69871 526 0 0
cpu0 213095 1268 120437 157686 968 0 31639 256 0 0
cpu1 208898 1071 104865 170609 1635 0 38231 270 0 0
ctxt 100092233
btime 1796036100
processes 1510117
procs_running 1
procs_blocked 1
"""

MOUNTS = r"""tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/cpuset cgroup rw,relatime,cpuset 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/devices cgroup rw,relatime,devices 0 0
cgroup /sys/fs/cgroup/freezer cgroup rw,relatime,freezer 0 0
cgroup /sys/fs/cgroup/blkio cgroup rw,relatime,blkio 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""


def test_tcp_lines():
    lines = TCP_HEAD.splitlines()
    assert parse_tcp_line(lines[0]) is None                      # the header
    listen = parse_tcp_line(lines[1])
    assert listen == {"local_port": 8000, "state": "0A", "tx_queue": 0, "rx_queue": 9,
                      "inode": 27426514}
    tw = parse_tcp_line(lines[2])
    assert (tw["local_port"], tw["state"], tw["inode"]) == (8000, "06", 0)
    assert parse_tcp_line(TCP6.splitlines()[1])["local_port"] == 0xD88F


def test_listeners_are_read_up_to_the_first_other_socket():
    assert listeners_in(TCP_HEAD) == ({8000: 9}, 1, True)
    # a read that ended within the listener's line: not known yet, more must be read
    cut = TCP_HEAD.index("\n", TCP_HEAD.index("   0:")) - 20
    assert listeners_in(TCP_HEAD[:cut]) == ({}, 0, False)
    # the whole listener line but nothing after it: the listeners may go on
    assert listeners_in(TCP_HEAD[:cut + 21]) == ({8000: 9}, 1, False)
    assert listeners_in(TCP6) == ({0xD88F: 1}, 1, True)


def test_tcp_states_counted():
    assert count_tcp_states(TCP_HEAD) == {"listen": 1, "time_wait": 6}
    assert count_tcp_states(TCP6) == {"listen": 1, "established": 2}


def test_netstat_and_snmp_counters():
    assert net_counters(NETSTAT, SNMP) == {
        "listen_overflows": 49876, "listen_drops": 49876, "tcp_timeouts": 34213,
        "syn_retrans": 13693, "passive_opens": 1874452, "active_opens": 2309140,
        "attempt_fails": 415813, "estab_resets": 3537, "out_rsts": 422183, "retrans_segs": 40380}


def test_netstat_columns_found_by_name_in_any_order():
    head, values = NETSTAT.splitlines()[:2]
    names, nums = head.split()[1:], values.split()[1:]
    order = list(reversed(range(len(names))))  # another kernel, another order
    text = ("TcpExt: " + " ".join(names[i] for i in order) + "\n"
            + "TcpExt: " + " ".join(nums[i] for i in order) + "\n")
    got = net_counters(text, "")
    assert got["listen_overflows"] == 49876 and got["syn_retrans"] == 13693
    assert "passive_opens" not in got                            # snmp's Tcp table was not given


def test_sockstat():
    tcp = parse_sockstat(SOCKSTAT)["TCP"]
    assert (tcp["inuse"], tcp["tw"], tcp["orphan"]) == (62, 1717, 29)
    assert parse_sockstat(SOCKSTAT6)["TCP6"] == {"inuse": 0}


def test_cgroup_files():
    assert parse_keyed(CPUACCT_STAT) == {"user": 42, "system": 65}
    assert parse_keyed(CPU_STAT)["nr_throttled"] == 0
    mem = parse_keyed(MEMORY_STAT)
    assert (mem["total_pgfault"], mem["total_pgmajfault"]) == (8737, 154)


def test_status_of_a_thread_in_a_container():
    assert parse_status(STATUS_THREAD) == {"tgid": 29379, "nspid": [29386, 11], "cpus": [0, 1],
                                           "voluntary": 1, "involuntary": 4}


def test_pid_stat_with_an_odd_command_name():
    s = parse_pid_stat(STAT_ODD_COMM)
    assert (s["ppid"], s["minflt"], s["majflt"], s["utime"], s["starttime"]) == (21999, 131, 0, 0,
                                                                                   536042)


def test_proc_stat():
    s = parse_proc_stat(PROC_STAT)
    assert s["softirq"] == {0: 31639, 1: 38231}
    assert (s["processes"], s["ctxt"]) == (1510117, 100092233)


def test_cpu_lists():
    assert parse_cpu_list("0-1") == [0, 1]
    assert parse_cpu_list("0-2,5\n") == [0, 1, 2, 5]
    assert parse_cpu_list("") == []


def test_cgroup_v1_mounts():
    m = cgroup_mounts(MOUNTS)
    assert {k: str(v) for k, v in m.items()} == {
        "cpu": "/sys/fs/cgroup/cpu", "cpuacct": "/sys/fs/cgroup/cpuacct",
        "memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids"}
    # systemd's layout mounts cpu and cpuacct together
    both = "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct 0 0\n"
    assert {k: str(v) for k, v in cgroup_mounts(both).items()} == {
        "cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct"}
    assert cgroup_mounts("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n") == {}


def test_pids_handed_out_across_a_wrap():
    assert pid_advance(7, 11, 32768) == 4
    # 32767 was the last before the allocator went back to 300
    assert pid_advance(32760, 305, 32768) == 7 + 6
    assert behind(20548, 20540, 32768) == 8
    assert behind(310, 32700, 32768) == 378


def test_per_task_counts_since_the_first_pass_or_since_created():
    c = _PerTask()
    c.update({1: (10, 5), 2: (3, 0)})               # the base
    c.update({1: (14, 6), 3: (2, 1)})               # 2 ended; 3 was created meanwhile
    c.update({1: (15, 6), 3: (1, 0)})               # pid 3 reused by another task
    assert c.totals() == [(15 - 10) + 0 + 1, (6 - 5) + 0 + 0]
    assert c.totals([1]) == [5, 1]


def test_series_columns_rates_and_added_containers():
    rows = [[1.0, 0.5, 3, None, 10, 1, 0, 0], [2.0, 0.25, 3, None, 12, 0, 5, 2],
            [3.0, 0.75, 3, None, 11, 2, 1, 0]]
    cols = _columns(rows)
    assert list(cols) == ["t", "cpu_cores", "time_wait", "accept_queue", "listen_overflows",
                          "syn_retrans"]                # fds empty, tasks never changed
    assert cols["listen_overflows"] == [0, 5, 1]
    added = _added_rows([rows, [[1.0, 0.5, 2, 7, 1, None, 0, 0], [2.0, 0.5, 2, 7, 1, None, 0, 0]]])
    assert added[0] == [1.0, 1.0, 5, 7, 11, 1, 0, 0] and added[2] == rows[2]
    assert len(SERIES_COLUMNS) == len(rows[0])
    out = {"net": {"listen_overflows": 60, "passive_opens": 0},
           "context_switches": {"voluntary": 100, "involuntary": 0, "covered_s": 5.0}}
    assert _rates(out, window=30.0) == {"listen_overflows": 2.0, "voluntary": 20.0}


def test_a_sampler_of_nothing_says_so():
    out = EvidenceSampler({"server": []}, every_s=0.05).start().stop()
    assert out["services"]["server"] == {"available": False,
                                         "reason": "no container of this service on this host"}
    assert out["sampler_cpu_s"] >= 0 and out["window_s"] >= 0


@pytest.mark.parametrize("spec, words", [("not a container", "not a container id"),
                                         ("0" * 64, "not on this host")])
def test_targets_that_cannot_be_read(spec, words):
    server = EvidenceSampler({"server": [spec]}).start().stop()["services"]["server"]
    assert server["available"] is False
    assert words in server["reason"] or "cgroup v2" in server["reason"]  # a host without v1
