#!/usr/bin/env python3
"""Tests that read infra/template.yaml itself.

The emulator (moto) deploys the template but silently ignores Object Lock,
versioning, point-in-time recovery, alarms, autoscaling, Fargate and load
balancer settings, and it cannot create the load balancer's TCP listeners
at all (see localstack/README.md). So the settings that make a real
deployment safe are proven here, from the template's own text.

Each property is a `check_*` function that returns the problems it found
(an empty list when the template is right). `TemplateTest` runs every check
on the template and expects no problem; `ChecksCanFail` breaks the template
in memory once per check, the way a careless edit would, and expects that
check to notice. So every check is shown to be able to fail.

    .emu/venv/bin/python -m unittest infra/test_template.py   # from the repo root

Needs PyYAML (in the emulators' venv, which tests/run.sh creates).
"""

import copy
import importlib.util
import os
import re
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(ROOT, "infra", "template.yaml")
CONFIG_RS = os.path.join(ROOT, "functions", "runtime", "src", "config", "mod.rs")
LAMBDA_BINS = os.path.join(ROOT, "functions", "lambda", "src", "bin")
PROVISION = os.path.join(ROOT, "localstack", "provision.py")

# The pipeline stages: queue name (as the SQS adapter derives it) and the
# Lambda binary that consumes it.
STAGES = {
    "inbound": "stratus-filter",
    "route": "stratus-route",
    "deliver": "stratus-deliver",
    "send": "stratus-send",
    "archive": "stratus-archive",
}

# Functions a schedule invokes (not a queue): name -> Lambda binary.
SCHEDULED = {"sweep": "stratus-sweep"}

# Public port -> the gateway's port in the container (unprivileged, because
# the image runs as a non-root user).
LISTENER_PORTS = {25: 2525, 587: 2587, 465: 2465, 443: 8443,
                  143: 1143, 993: 1993, 110: 1110, 995: 1995, 4190: 4190}

# Actions that IAM cannot scope to a resource: the only ones allowed on "*".
UNSCOPABLE = {
    "ecr:GetAuthorizationToken",
    # Lambda functions in a VPC (send) manage their network interfaces.
    "ec2:AssignPrivateIpAddresses", "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface", "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets", "ec2:UnassignPrivateIpAddresses",
}

# Outputs that are for the operator (DNS, PTR, alarms), not settings.
OPERATOR_OUTPUTS = {"InboundIpAddresses", "LoadBalancerDnsName",
                    "OutboundSmtpIp", "OutboundSmtpIpAllocationId",
                    "AlarmTopicArn"}

DATA_TYPES = {"AWS::S3::Bucket", "AWS::DynamoDB::Table", "AWS::SQS::Queue"}


def _load_provision():
    spec = importlib.util.spec_from_file_location("stratus_provision", PROVISION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PROVISION_MODULE = _load_provision()


def load():
    return PROVISION_MODULE.load_template(TEMPLATE)


# ------------------------------------------------------------- helpers ---

def resources(t, rtype=None):
    return {k: r for k, r in (t.get("Resources") or {}).items()
            if rtype is None or r.get("Type") == rtype}


def props(r):
    return r.get("Properties") or {}


def text(x):
    """A compact, comparable spelling of a value with intrinsics:
    GetAtt -> "Res.Attr", Ref -> "Ref:Name", Sub -> its string."""
    if isinstance(x, dict) and len(x) == 1:
        (k, v), = x.items()
        if k == "Fn::GetAtt":
            return ".".join(v) if isinstance(v, list) else v
        if k == "Ref":
            return f"Ref:{v}"
        if k == "Fn::Sub":
            return v if isinstance(v, str) else v[0]
    return x


def listify(x):
    return x if isinstance(x, list) else [x]


def settings_env_names():
    """The environment variables every binary reads (the SETTINGS table)."""
    with open(CONFIG_RS, encoding="utf-8") as f:
        src = f.read()
    start = src.index("pub const SETTINGS: &[Setting] = &[")
    block = src[start:src.index("];", start)]
    return set(re.findall(r'"((?:STRATUS|AWS)_[A-Z0-9_]+)"', block))


def policy_statements(role):
    out = []
    for p in props(role).get("Policies") or []:
        out += listify(p["PolicyDocument"]["Statement"])
    return out


def grants(role):
    """{(action, resource text)} a role's inline policies allow."""
    out = set()
    for s in policy_statements(role):
        for a in listify(s.get("Action", [])):
            for r in listify(s.get("Resource", [])):
                out.add((a, text(r)))
    return out


def container(t):
    """The gateway's container (the optional clamd has a task of its own)."""
    td = resources(t, "AWS::ECS::TaskDefinition")["GatewayTaskDefinition"]
    (c,) = props(td)["ContainerDefinitions"]
    return c


def functions(t):
    return resources(t, "AWS::Lambda::Function")


def queue_stage(t, queue_logical):
    name = text(props(resources(t)[queue_logical])["QueueName"])
    m = re.fullmatch(r"\$\{Prefix\}-([a-z]+)(-dlq)?", name or "")
    return (m.group(1), bool(m.group(2))) if m else (None, None)


def stage_queues(t):
    """{stage: (queue logical id, dead-letter queue logical id)}"""
    out = {}
    for lid, q in resources(t, "AWS::SQS::Queue").items():
        stage, dead = queue_stage(t, lid)
        if stage and not dead:
            dlq = text(props(q).get("RedrivePolicy", {}).get("deadLetterTargetArn"))
            out[stage] = (lid, dlq.split(".")[0] if isinstance(dlq, str) else None)
    return out


# -------------------------------------------------------------- checks ---

def check_archive_bucket_object_lock(t):
    p = props(resources(t)["ArchiveBucket"])
    problems = []
    if p.get("ObjectLockEnabled") is not True:
        problems.append("ArchiveBucket: ObjectLockEnabled must be true")
    lock = p.get("ObjectLockConfiguration") or {}
    if lock.get("ObjectLockEnabled") != "Enabled":
        problems.append("ArchiveBucket: ObjectLockConfiguration not Enabled")
    retention = (lock.get("Rule") or {}).get("DefaultRetention") or {}
    if retention.get("Mode") != "COMPLIANCE":
        problems.append(f"ArchiveBucket: default retention mode {retention.get('Mode')!r}, want COMPLIANCE")
    if retention.get("Days") != {"Ref": "ArchiveRetentionDays"} or "Years" in retention:
        problems.append("ArchiveBucket: default retention must be Days: !Ref ArchiveRetentionDays")
    param = t["Parameters"].get("ArchiveRetentionDays", {})
    if not int(param.get("MinValue", 0)) >= 1:
        problems.append("ArchiveRetentionDays must have MinValue >= 1")
    return problems


def check_archive_bucket_versioning(t):
    p = props(resources(t)["ArchiveBucket"])
    if (p.get("VersioningConfiguration") or {}).get("Status") != "Enabled":
        return ["ArchiveBucket: versioning must be Enabled (Object Lock needs it)"]
    return []


def check_buckets_abort_incomplete_multipart(t):
    problems = []
    for lid, b in resources(t, "AWS::S3::Bucket").items():
        rules = (props(b).get("LifecycleConfiguration") or {}).get("Rules") or []
        if not any(r.get("Status") == "Enabled"
                   and int((r.get("AbortIncompleteMultipartUpload") or {})
                           .get("DaysAfterInitiation", 0)) >= 1
                   for r in rules):
            problems.append(f"{lid}: no enabled AbortIncompleteMultipartUpload rule")
        pab = props(b).get("PublicAccessBlockConfiguration") or {}
        for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls",
                  "RestrictPublicBuckets"):
            if pab.get(k) is not True:
                problems.append(f"{lid}: public access block {k} is not true")
    return problems


def check_tables_pitr_on_demand(t):
    problems = []
    tables = resources(t, "AWS::DynamoDB::Table")
    if not tables:
        problems.append("no DynamoDB table")
    for lid, tb in tables.items():
        p = props(tb)
        if p.get("BillingMode") != "PAY_PER_REQUEST":
            problems.append(f"{lid}: BillingMode {p.get('BillingMode')!r}, want PAY_PER_REQUEST")
        pitr = p.get("PointInTimeRecoverySpecification") or {}
        if pitr.get("PointInTimeRecoveryEnabled") is not True:
            problems.append(f"{lid}: point-in-time recovery is not enabled")
    return problems


def check_queues_have_dead_letter_queues(t):
    problems = []
    queues = resources(t, "AWS::SQS::Queue")
    sq = stage_queues(t)
    if set(sq) != set(STAGES):
        problems.append(f"stage queues {sorted(sq)}, want {sorted(STAGES)}")
    used = {}
    for stage, (lid, dlq) in sq.items():
        p = props(queues[lid])
        redrive = p.get("RedrivePolicy") or {}
        if dlq not in queues:
            problems.append(f"{lid}: no RedrivePolicy to a queue of this template")
            continue
        if queue_stage(t, dlq) != (stage, True):
            problems.append(f"{lid}: dead letters go to {dlq}, not to <prefix>{stage}-dlq")
        if redrive.get("maxReceiveCount") != {"Ref": "MaxReceiveCount"}:
            problems.append(f"{lid}: maxReceiveCount must be !Ref MaxReceiveCount")
        if "RedrivePolicy" in props(queues[dlq]):
            problems.append(f"{dlq}: a dead-letter queue must not redrive further")
        if int(props(queues[dlq]).get("MessageRetentionPeriod", 345600)) <= \
                int(p.get("MessageRetentionPeriod", 345600)):
            problems.append(f"{dlq}: must keep messages longer than {lid} "
                            "(SQS keeps the original enqueue time)")
        used.setdefault(dlq, []).append(lid)
    for dlq, users in used.items():
        if len(users) > 1:
            problems.append(f"{dlq} is the dead-letter queue of {users}")
    return problems


def check_alarm_on_every_dead_letter_queue(t):
    problems = []
    alarms = resources(t, "AWS::CloudWatch::Alarm").values()
    for stage, (_, dlq) in stage_queues(t).items():
        ok = [a for a in alarms
              if props(a).get("Namespace") == "AWS/SQS"
              and props(a).get("MetricName") == "ApproximateNumberOfMessagesVisible"
              and {"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}}
              in (props(a).get("Dimensions") or [])
              and props(a).get("ComparisonOperator") == "GreaterThanOrEqualToThreshold"
              and float(props(a).get("Threshold", 0)) == 1
              and props(a).get("AlarmActions")]
        if len(ok) != 1:
            problems.append(f"{dlq}: want one alarm on depth >= 1 with an action, found {len(ok)}")
    return problems


def check_alarm_on_every_function(t):
    problems = []
    alarms = resources(t, "AWS::CloudWatch::Alarm").values()
    for fn in functions(t):
        ok = [a for a in alarms
              if props(a).get("Namespace") == "AWS/Lambda"
              and props(a).get("MetricName") == "Errors"
              and {"Name": "FunctionName", "Value": {"Ref": fn}}
              in (props(a).get("Dimensions") or [])
              and props(a).get("Statistic") == "Sum"
              and float(props(a).get("Threshold", 0)) == 1
              and props(a).get("AlarmActions")]
        if len(ok) != 1:
            problems.append(f"{fn}: want one Errors alarm with an action, found {len(ok)}")
    if not functions(t):
        problems.append("no Lambda function")
    return problems


def check_gateway_autoscaling(t):
    problems = []
    services = resources(t, "AWS::ECS::Service")
    targets = resources(t, "AWS::ApplicationAutoScaling::ScalableTarget")
    policies = resources(t, "AWS::ApplicationAutoScaling::ScalingPolicy")
    if not services:
        problems.append("no ECS service")
    for svc in services:
        if props(services[svc]).get("TaskDefinition") != {"Ref": "GatewayTaskDefinition"}:
            continue  # clamd: one task, not scaled
        mine = [lid for lid, st in targets.items()
                if f"${{{svc}.Name}}" in str(text(props(st).get("ResourceId")))]
        if len(mine) != 1:
            problems.append(f"{svc}: want one scalable target, found {len(mine)}")
            continue
        st = props(targets[mine[0]])
        if (st.get("ServiceNamespace"), st.get("ScalableDimension")) != \
                ("ecs", "ecs:service:DesiredCount"):
            problems.append(f"{mine[0]}: does not scale the ECS desired count")
        if st.get("MinCapacity") != {"Ref": "MinTasks"} or \
                st.get("MaxCapacity") != {"Ref": "MaxTasks"}:
            problems.append(f"{mine[0]}: capacity must be MinTasks..MaxTasks")
        tracking = [p for p in policies.values()
                    if props(p).get("ScalingTargetId") == {"Ref": mine[0]}
                    and props(p).get("PolicyType") == "TargetTrackingScaling"]
        if not tracking:
            problems.append(f"{svc}: no target tracking policy")
    return problems


def check_load_balancer_ports_and_client_ips(t):
    problems = []
    lbs = resources(t, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    if len(lbs) != 1 or any(props(lb).get("Type") != "network" or
                            props(lb).get("Scheme") != "internet-facing"
                            for lb in lbs.values()):
        problems.append("want one internet-facing network load balancer")
    tgs = resources(t, "AWS::ElasticLoadBalancingV2::TargetGroup")
    listeners = resources(t, "AWS::ElasticLoadBalancingV2::Listener")
    services = resources(t, "AWS::ECS::Service")
    c = container(t)
    mapped = {m["ContainerPort"] for m in c.get("PortMappings") or []}
    ingress = [(i.get("FromPort"), i.get("ToPort"), i.get("CidrIp")) for i in
               props(resources(t)["GatewaySecurityGroup"]).get("SecurityGroupIngress") or []]
    seen = {}
    for lid, li in listeners.items():
        p = props(li)
        port = int(p.get("Port", 0))
        if p.get("Protocol") != "TCP":
            problems.append(f"{lid}: protocol {p.get('Protocol')}, want TCP (TLS ends in the gateway)")
        actions = p.get("DefaultActions") or []
        if len(actions) != 1 or actions[0].get("Type") != "forward":
            problems.append(f"{lid}: must forward to one target group")
            continue
        tg_id = text(actions[0].get("TargetGroupArn"))[4:]
        seen[port] = tg_id
        tg = props(tgs.get(tg_id, {}))
        attrs = {a["Key"]: str(a["Value"]).lower() for a in tg.get("TargetGroupAttributes") or []}
        if tg.get("TargetType") != "ip" or tg.get("Protocol") != "TCP":
            problems.append(f"{tg_id}: want TCP targets of type ip")
        if attrs.get("preserve_client_ip.enabled") != "true":
            problems.append(f"{tg_id}: preserve_client_ip.enabled is not true")
        if attrs.get("proxy_protocol_v2.enabled") == "true":
            problems.append(f"{tg_id}: proxy protocol is on; the gateway does not speak it")
        want = LISTENER_PORTS.get(port)
        if int(tg.get("Port", 0)) != want:
            problems.append(f"{tg_id}: port {tg.get('Port')}, want {want} for listener {port}")
        if want not in mapped:
            problems.append(f"container has no port mapping for {want}")
        if (want, want, "0.0.0.0/0") not in ingress:
            problems.append(f"GatewaySecurityGroup does not admit clients on {want}")
        users = [(s, lb) for s, svc in services.items()
                 for lb in props(svc).get("LoadBalancers") or []
                 if lb.get("TargetGroupArn") == {"Ref": tg_id}]
        if len(users) != 1 or users[0][1].get("ContainerPort") != want:
            problems.append(f"{tg_id}: want exactly one ECS service registering container port {want}")
    if set(seen) != set(LISTENER_PORTS):
        problems.append(f"listener ports {sorted(seen)}, want {sorted(LISTENER_PORTS)}")
    for s, svc in services.items():
        if len(props(svc).get("LoadBalancers") or []) > 5:
            problems.append(f"{s}: ECS allows at most five target groups per service")
    return problems


def check_event_sources_report_batch_item_failures(t):
    problems = []
    maps = resources(t, "AWS::Lambda::EventSourceMapping")
    fns = functions(t)
    queues = resources(t, "AWS::SQS::Queue")
    by_queue = {}
    for lid, m in maps.items():
        p = props(m)
        if "ReportBatchItemFailures" not in (p.get("FunctionResponseTypes") or []):
            problems.append(f"{lid}: FunctionResponseTypes lacks ReportBatchItemFailures")
        q = text(p.get("EventSourceArn")).split(".")[0]
        by_queue.setdefault(q, []).append(lid)
        fn = text(p.get("FunctionName"))[4:]
        if fn in fns and q in queues:
            timeout = int(props(fns[fn]).get("Timeout", 3))
            visibility = int(props(queues[q]).get("VisibilityTimeout", 30))
            if visibility < 6 * timeout:
                problems.append(f"{q}: visibility {visibility}s < 6 x {fn} timeout {timeout}s")
        else:
            problems.append(f"{lid}: maps {q} to {fn}, not a queue and function of this template")
    for stage, (q, _) in stage_queues(t).items():
        if len(by_queue.get(q, [])) != 1:
            problems.append(f"{q}: want one event source mapping, found {len(by_queue.get(q, []))}")
    return problems


def check_functions_runtime(t):
    problems = []
    bins = sorted(f[:-3] for f in os.listdir(LAMBDA_BINS) if f.endswith(".rs"))
    keys = []
    for lid, f in functions(t).items():
        p = props(f)
        if p.get("Runtime") != "provided.al2023":
            problems.append(f"{lid}: runtime {p.get('Runtime')!r}, want provided.al2023")
        if p.get("Architectures") != ["x86_64"]:
            problems.append(f"{lid}: architectures {p.get('Architectures')!r}, want [x86_64]")
        key = text((p.get("Code") or {}).get("S3Key"))
        m = re.fullmatch(r"\$\{LambdaCodeKeyPrefix\}(stratus-[a-z]+)\.zip", str(key))
        if not m or (p.get("Code") or {}).get("S3Bucket") != {"Ref": "LambdaCodeBucket"}:
            problems.append(f"{lid}: code must be LambdaCodeBucket/<prefix>stratus-<stage>.zip")
        else:
            keys.append(m.group(1))
    if sorted(keys) != bins or sorted([*STAGES.values(), *SCHEDULED.values()]) != bins:
        problems.append(f"function zips {sorted(keys)} do not match the bootstraps {bins}")
    return problems


def check_scheduled_functions_run_hourly(t):
    """Each scheduled function has an hourly rule that targets it, and
    permission for EventBridge (that rule only) to invoke it."""
    problems = []
    fns = functions(t)
    rules = resources(t, "AWS::Events::Rule")
    perms = resources(t, "AWS::Lambda::Permission")
    for name in SCHEDULED:
        fn = f"{name.capitalize()}Function"
        if fn not in fns:
            problems.append(f"{fn}: missing")
            continue
        rule = [lid for lid, r in rules.items()
                if props(r).get("ScheduleExpression") == "rate(1 hour)"
                and props(r).get("State") == "ENABLED"
                and any(x.get("Arn") == {"Fn::GetAtt": [fn, "Arn"]}
                        for x in props(r).get("Targets") or [])]
        if len(rule) != 1:
            problems.append(f"{fn}: want one enabled hourly rule targeting it, found {len(rule)}")
            continue
        ok = [p for p in perms.values()
              if props(p).get("FunctionName") == {"Ref": fn}
              and props(p).get("Principal") == "events.amazonaws.com"
              and props(p).get("Action") == "lambda:InvokeFunction"
              and props(p).get("SourceArn") == {"Fn::GetAtt": [rule[0], "Arn"]}]
        if len(ok) != 1:
            problems.append(f"{fn}: EventBridge may not invoke it from {rule[0]} alone")
    return problems


def check_iam_no_wildcards(t):
    problems = []
    for lid, role in resources(t, "AWS::IAM::Role").items():
        if props(role).get("ManagedPolicyArns"):
            problems.append(f"{lid}: managed policies grant more than the stage needs")
        for s in policy_statements(role):
            if "NotAction" in s or "NotResource" in s or s.get("Effect") != "Allow":
                problems.append(f"{lid}/{s.get('Sid')}: only plain Allow statements")
            for a in listify(s.get("Action", [])):
                if "*" in a:
                    problems.append(f"{lid}: wildcard action {a}")
            for r in listify(s.get("Resource", [])):
                r = text(r)
                if r == "*":
                    bad = set(listify(s.get("Action", []))) - UNSCOPABLE
                    if bad:
                        problems.append(f"{lid}: {sorted(bad)} on every resource")
                elif isinstance(r, str) and re.search(r"(^|:)\*$|:\*:", r):
                    problems.append(f"{lid}: resource {r} is a wildcard")
    return problems


def _consume(q):
    return {(a, f"{q}.Arn") for a in ("sqs:ChangeMessageVisibility", "sqs:DeleteMessage",
                                      "sqs:GetQueueAttributes", "sqs:ReceiveMessage")}


def _enqueue(*qs):
    return {(a, f"{q}.Arn") for q in qs for a in ("sqs:GetQueueUrl", "sqs:SendMessage")}


def _logs(group):
    return {(a, f"{group}.Arn") for a in ("logs:CreateLogStream", "logs:PutLogEvents")}


def _on(resource, *actions):
    return {(a, resource) for a in actions}


BODIES = "${MessagesBucket.Arn}/msg/*"
SPAM_MODELS = "${MessagesBucket.Arn}/spam/*"
USER_MODELS = "${MessagesBucket.Arn}/spam/user/*"
QUARANTINE = "${MessagesBucket.Arn}/quarantine/*"
JOURNAL = "${ArchiveBucket.Arn}/journal/*"
TABLE = "IndexTable.Arn"
ENI = _on("*", "ec2:AssignPrivateIpAddresses", "ec2:CreateNetworkInterface",
          "ec2:DeleteNetworkInterface", "ec2:DescribeNetworkInterfaces",
          "ec2:DescribeSubnets", "ec2:UnassignPrivateIpAddresses")

# Exactly what each role may do (derived from what the code calls: the S3,
# DynamoDB and SQS adapters in functions/store-aws, the stages in
# functions/pipeline, the gateway with STRATUS_RUN_STAGES=false).
EXPECTED_GRANTS = {
    # filter scores what the gateway did not (the body, the models, the
    # recipients' spam settings) and learns from Junk (a user's model and
    # the row naming it).
    "FilterFunctionRole": _consume("InboundQueue") | _enqueue("RouteQueue")
    | _on(BODIES, "s3:GetObject") | _on(SPAM_MODELS, "s3:GetObject")
    | _on(USER_MODELS, "s3:DeleteObject", "s3:PutObject")
    | _on("MessagesBucket.Arn", "s3:ListBucket")
    | _on(TABLE, "dynamodb:GetItem", "dynamodb:UpdateItem")
    | _logs("FilterLogGroup"),
    # route and deliver bounce recipients gone since RCPT (a DSN body
    # under msg/, a job on route); deliver re-queues a delivery that waits
    # for room in a mailbox over its quota.
    "RouteFunctionRole": _consume("RouteQueue")
    | _enqueue("RouteQueue", "DeliverQueue", "SendQueue", "ArchiveQueue")
    | _on(BODIES, "s3:GetObject", "s3:PutObject")
    | _on(QUARANTINE, "s3:PutObject")
    | _on("MessagesBucket.Arn", "s3:ListBucket")
    | _on(TABLE, "dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem")
    | _logs("RouteLogGroup"),
    "DeliverFunctionRole": _consume("DeliverQueue") | _enqueue("DeliverQueue", "RouteQueue")
    | _on(BODIES, "s3:GetObject", "s3:PutObject")
    | _on("MessagesBucket.Arn", "s3:ListBucket")
    | _on(TABLE, "dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem")
    | _logs("DeliverLogGroup"),
    "SendFunctionRole": _consume("SendQueue") | _enqueue("SendQueue", "RouteQueue")
    | _on(BODIES, "s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject")
    | _on("MessagesBucket.Arn", "s3:ListBucket")
    | _on(TABLE, "dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem")
    | ENI | _logs("SendLogGroup"),
    "ArchiveFunctionRole": _consume("ArchiveQueue")
    | _on(BODIES, "s3:GetObject") | _on("MessagesBucket.Arn", "s3:ListBucket")
    | _on(JOURNAL, "s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject")
    | _on("ArchiveBucket.Arn", "s3:ListBucket")
    | _on(TABLE, "dynamodb:GetItem", "dynamodb:UpdateItem") | _logs("ArchiveLogGroup"),
    # The sweeper lists and deletes bodies, reads and deletes index rows
    # (updates: its marks and the mailboxes' pruned_modseq); it queues the
    # TLS reports (a body under msg/, a job on route).
    "SweepFunctionRole": _on("MessagesBucket.Arn", "s3:ListBucket")
    | _on(BODIES, "s3:DeleteObject", "s3:PutObject") | _enqueue("RouteQueue")
    | _on(QUARANTINE, "s3:DeleteObject")
    | _on(TABLE, "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:Query",
          "dynamodb:UpdateItem")
    | _logs("SweepLogGroup"),
    "GatewayTaskRole": _enqueue("InboundQueue")
    | _on(BODIES, "s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject")
    | _on(SPAM_MODELS, "s3:GetObject")
    | _on("MessagesBucket.Arn", "s3:ListBucket")
    | _on(TABLE, "dynamodb:ConditionCheckItem", "dynamodb:DeleteItem", "dynamodb:GetItem",
          "dynamodb:Query", "dynamodb:UpdateItem"),
    "GatewayExecutionRole": _on("*", "ecr:GetAuthorizationToken")
    | _on("arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/*",
          "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
          "ecr:GetDownloadUrlForLayer")
    | _logs("GatewayLogGroup")
    | _on("Ref:CertificateSecretArn", "secretsmanager:GetSecretValue"),
}

TRUSTED = {"GatewayTaskRole": "ecs-tasks.amazonaws.com",
           "GatewayExecutionRole": "ecs-tasks.amazonaws.com"}


def check_iam_exact_grants(t):
    problems = []
    roles = resources(t, "AWS::IAM::Role")
    if set(roles) != set(EXPECTED_GRANTS):
        problems.append(f"roles {sorted(roles)}, want {sorted(EXPECTED_GRANTS)}")
    for lid, want in EXPECTED_GRANTS.items():
        if lid not in roles:
            continue
        have = grants(roles[lid])
        for extra in sorted(have - want):
            problems.append(f"{lid} allows {extra}, which it does not need")
        for missing in sorted(want - have):
            problems.append(f"{lid} lacks {missing}, which it needs")
        principal = TRUSTED.get(lid, "lambda.amazonaws.com")
        trust = listify(props(roles[lid])["AssumeRolePolicyDocument"]["Statement"])
        if [s.get("Principal") for s in trust] != [{"Service": principal}]:
            problems.append(f"{lid}: must be assumable by {principal} only")
    # The archive function only touches its own archive#<month> entries.
    if "ArchiveFunctionRole" in roles:
        ddb = [s for s in policy_statements(roles["ArchiveFunctionRole"])
               if any(a.startswith("dynamodb:") for a in listify(s.get("Action", [])))]
        cond = [s.get("Condition", {}).get("ForAllValues:StringLike", {})
                .get("dynamodb:LeadingKeys") for s in ddb]
        if cond != [["archive#*"]]:
            problems.append("ArchiveFunctionRole: DynamoDB access must be limited to archive#* keys")
    return problems


def check_data_stores_retained(t):
    problems = []
    stores = {lid: r for lid, r in resources(t).items() if r.get("Type") in DATA_TYPES}
    if len(stores) < 13:
        problems.append(f"only {len(stores)} data stores (2 buckets, a table, 10 queues expected)")
    for lid, r in stores.items():
        if r.get("DeletionPolicy") != "Retain" or r.get("UpdateReplacePolicy") != "Retain":
            problems.append(f"{lid}: DeletionPolicy and UpdateReplacePolicy must be Retain")
        if "Condition" in r:
            problems.append(f"{lid}: data stores are always deployed (no Condition)")
    return problems


def check_compute_is_gated(t):
    problems = []
    cond = t.get("Conditions", {}).get("WithCompute", {})
    if {"Fn::Equals": [{"Ref": "DeployCompute"}, "true"]} not in cond.get("Fn::And", [cond]):
        problems.append("WithCompute must require DeployCompute=true")
    for lid, r in resources(t).items():
        if r.get("Type") in DATA_TYPES:
            continue
        c = r.get("Condition")
        chain = set()
        while c and c not in chain:  # follow Fn::And / Condition down to WithCompute
            chain.add(c)
            parts = t["Conditions"].get(c, {}).get("Fn::And", [])
            c = next((p["Condition"] for p in parts
                      if isinstance(p, dict) and "Condition" in p), None)
        if "WithCompute" not in chain:
            problems.append(f"{lid}: compute resource without the WithCompute condition")
    return problems


def _output_name(var):
    """STRATUS_S3_BUCKET -> StratusS3Bucket; AWS_REGION -> StratusAwsRegion."""
    words = var.lower().split("_")
    if words[0] == "aws":
        words = ["stratus"] + words
    return "".join(w.capitalize() for w in words)


def check_outputs_map_to_settings(t):
    problems = []
    known = settings_env_names()
    seen = {}
    for key, out in (t.get("Outputs") or {}).items():
        desc = " ".join(str(out.get("Description", "")).split())
        if key in OPERATOR_OUTPUTS:
            if "->" in desc:
                problems.append(f"output {key} is for operators but claims a setting")
            continue
        m = re.search(r"-> ((?:STRATUS|AWS)_[A-Z0-9_]+)$", desc)
        if not key.startswith("Stratus") or not m:
            problems.append(f"output {key}: neither a setting (Stratus*, '-> NAME') "
                            "nor a documented operator output")
            continue
        var = m.group(1)
        if var not in known:
            problems.append(f"output {key} -> {var}: the gateway has no such setting")
        if _output_name(var) != key:
            problems.append(f"output {key} -> {var}: want the name {_output_name(var)}")
        if var in seen:
            problems.append(f"{var} is given by both {seen[var]} and {key}")
        seen[var] = key
    # Wherever the template itself sets one of these variables, it uses the
    # output's value; and the emulator settings come from these outputs.
    env = {e["Name"]: e.get("Value") for e in container(t).get("Environment") or []}
    for f in functions(t).values():
        for name, value in ((props(f).get("Environment") or {}).get("Variables") or {}).items():
            env.setdefault(name, value)
    for var, key in seen.items():
        if var in env and env[var] != t["Outputs"][key]["Value"]:
            problems.append(f"{var} is set to {env[var]!r}, but output {key} says "
                            f"{t['Outputs'][key]['Value']!r}")
    for key, var in PROVISION_MODULE.OUTPUT_ENV:
        if seen.get(var) != key:
            problems.append(f"localstack/provision.py reads {key} as {var}; the template disagrees")
    return problems


def check_environment_uses_known_settings(t):
    problems = []
    known = settings_env_names()
    c = container(t)
    names = [e["Name"] for e in c.get("Environment") or []]
    for f in functions(t).values():
        names += list(((props(f).get("Environment") or {}).get("Variables") or {}))
    for name in names:
        if name not in known:
            problems.append(f"{name} is not a setting the gateway or functions read")
    secrets = {s["Name"]: text(s["ValueFrom"]) for s in c.get("Secrets") or []}
    if secrets != {"TLS_CERT_PEM": "${CertificateSecretArn}:cert::",
                   "TLS_KEY_PEM": "${CertificateSecretArn}:key::"}:
        problems.append(f"container secrets {secrets}: want the cert and key of CertificateSecretArn")
    env = {e["Name"]: e.get("Value") for e in c.get("Environment") or []}
    for must in ("STRATUS_TLS_CERT", "STRATUS_TLS_KEY"):
        if not str(env.get(must, "")).startswith("/"):
            problems.append(f"{must} must name the file the entrypoint writes")
    if env.get("STRATUS_BACKEND") != "aws" or env.get("STRATUS_RUN_STAGES") != "false":
        problems.append("the gateway must use the aws backend and leave the stages to Lambda")
    listens = {int(v.rsplit(":", 1)[1]) for k, v in env.items() if k.endswith("_LISTEN")}
    if listens != set(LISTENER_PORTS.values()) | {8080}:
        problems.append(f"listen ports {sorted(listens)} do not match the target groups")
    return problems


def check_log_groups_retention(t):
    problems = []
    groups = resources(t, "AWS::Logs::LogGroup")
    for lid, g in groups.items():
        if props(g).get("RetentionInDays") != {"Ref": "LogRetentionDays"}:
            problems.append(f"{lid}: retention must be !Ref LogRetentionDays")
    for lid, f in functions(t).items():
        g = text((props(f).get("LoggingConfig") or {}).get("LogGroup"))
        if not (isinstance(g, str) and g[4:] in groups):
            problems.append(f"{lid}: logs to no log group of this template")
    opts = (container(t).get("LogConfiguration") or {}).get("Options") or {}
    if text(opts.get("awslogs-group", ""))[4:] not in groups:
        problems.append("the gateway container logs to no log group of this template")
    return problems


def check_parameters_are_constrained(t):
    problems = []
    for name, p in (t.get("Parameters") or {}).items():
        if p.get("Type") == "String" and not ("AllowedPattern" in p or "AllowedValues" in p):
            problems.append(f"parameter {name}: no AllowedPattern or AllowedValues")
        if p.get("Type") == "Number" and not ("AllowedValues" in p or
                                              ("MinValue" in p and "MaxValue" in p)):
            problems.append(f"parameter {name}: no MinValue/MaxValue or AllowedValues")
        if ("AllowedPattern" in p or "MinValue" in p) and not p.get("ConstraintDescription"):
            problems.append(f"parameter {name}: no ConstraintDescription (the message users see)")
        if "Default" in p and "AllowedPattern" in p and \
                not re.fullmatch(p["AllowedPattern"], str(p["Default"])):
            problems.append(f"parameter {name}: its default does not match its pattern")
    return problems


# Values each pattern must accept and refuse (CloudFormation matches the
# whole value, as re.fullmatch does).
PATTERN_CASES = {
    "Prefix": (["stratus", "a", "mail-prod"], ["Stratus", "-x", "x-", "a" * 21]),
    "MailDomain": (["", "example.com", "mail.example.co.uk"],
                   ["Example.com", "example", "exa mple.com", "example..com"]),
    "MailHostname": (["", "mail.example.com"], ["mail", "https://mail.example.com"]),
    "CertificateSecretArn": (
        ["", "arn:aws:secretsmanager:us-east-1:123456789012:secret:stratus/tls-AbC123"],
        ["stratus-tls", "arn:aws:secretsmanager:us-east-1:123456789012:secret:stratus-tls"]),
    "GatewayImage": (
        ["", "123456789012.dkr.ecr.us-east-1.amazonaws.com/stratus:1a2b3c4",
         "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mail/stratus@sha256:" + "a" * 64],
        ["stratus:latest", "123456789012.dkr.ecr.us-east-1.amazonaws.com/stratus",
         "docker.io/library/stratus:1"]),
    "LambdaCodeBucket": (["", "my-artifacts"], ["My_Artifacts", "ab"]),
    "LambdaCodeKeyPrefix": (["", "releases/1a2b3c4/"], ["releases/ 1/", "a" * 201]),
    "MaxMessageSize": (["50M", "1G", "1048576"], ["0", "50 MB", "-1", "M"]),
    "AlarmEmail": (["", "ops@example.com"], ["ops", "ops@example"]),
    # The send function refuses a lifetime outside 10 s to 30 days at every
    # cold start (functions/runtime/src/config/values.rs, parse_lifetime):
    # the pattern must let through exactly those.
    "SendLifetime": (
        ["10", "10s", "59", "90m", "5d", "12h", "30d", "720h", "43200m", "2592000",
         "2592000s", "1m", "1h", "1d"],
        ["0", "9", "9s", "5", "31d", "721h", "43201m", "2592001", "60d", "05d",
         "1w", "5 d", "d"]),
}


def check_parameter_patterns(t):
    problems = []
    params = t.get("Parameters") or {}
    for name, (good, bad) in PATTERN_CASES.items():
        pattern = params.get(name, {}).get("AllowedPattern")
        if pattern is None:
            problems.append(f"parameter {name}: no AllowedPattern")
            continue
        max_len = params[name].get("MaxLength")
        for v in good:
            if not re.fullmatch(pattern, v):
                problems.append(f"parameter {name} refuses the valid value {v!r}")
        for v in bad:
            if re.fullmatch(pattern, v) and not (max_len and len(v) > int(max_len)):
                problems.append(f"parameter {name} accepts the invalid value {v!r}")
    return problems


# Fargate's CPU/memory pairs (MiB), per CPU units.
FARGATE_SIZES = {
    "256": [512, 1024, 2048],
    "512": list(range(1024, 4097, 1024)),
    "1024": list(range(2048, 8193, 1024)),
    "2048": list(range(4096, 16385, 1024)),
    "4096": list(range(8192, 30721, 1024)),
}


def check_gateway_size_rules(t):
    problems = []
    rules = t.get("Rules") or {}
    cpus = t["Parameters"]["GatewayCpu"].get("AllowedValues") or []
    if sorted(cpus, key=int) != sorted(FARGATE_SIZES, key=int):
        problems.append(f"GatewayCpu allows {cpus}, want {sorted(FARGATE_SIZES, key=int)}")
    for cpu, sizes in FARGATE_SIZES.items():
        found = [r for r in rules.values()
                 if r.get("RuleCondition") == {"Fn::Equals": [{"Ref": "GatewayCpu"}, cpu]}]
        allowed = []
        for r in found:
            for a in r.get("Assertions") or []:
                c = a.get("Assert", {}).get("Fn::Contains")
                if c and c[1] == {"Ref": "GatewayMemory"} and a.get("AssertDescription"):
                    allowed = [int(x) for x in c[0]]
        if allowed != sizes:
            problems.append(f"GatewayCpu {cpu}: rule allows memory {allowed}, Fargate {sizes}")
    default = (t["Parameters"]["GatewayCpu"].get("Default"),
               int(t["Parameters"]["GatewayMemory"].get("Default", 0)))
    if default[1] not in FARGATE_SIZES.get(default[0], []):
        problems.append(f"default gateway size {default} is not a Fargate size")
    required = {"MailDomain", "CertificateSecretArn", "GatewayImage", "LambdaCodeBucket"}
    for rule in rules.values():
        if rule.get("RuleCondition") == {"Fn::Equals": [{"Ref": "DeployCompute"}, "true"]}:
            for a in rule.get("Assertions") or []:
                inner = a.get("Assert", {}).get("Fn::Not", [{}])[0].get("Fn::Equals", [])
                if len(inner) == 2 and inner[1] == "" and a.get("AssertDescription"):
                    required.discard(inner[0].get("Ref"))
    if required:
        problems.append(f"DeployCompute=true is not refused without {sorted(required)}")
    return problems


def check_outbound_smtp_has_a_stable_address(t):
    problems = []
    send = props(functions(t).get("SendFunction", {}))
    subnets = (send.get("VpcConfig") or {}).get("SubnetIds") or []
    if sorted(text(s) for s in subnets) != ["Ref:PrivateSubnetA", "Ref:PrivateSubnetB"]:
        problems.append("SendFunction must run in the private subnets")
    route = props(resources(t).get("PrivateDefaultRoute", {}))
    if route.get("NatGatewayId") != {"Ref": "NatGateway"} or \
            route.get("DestinationCidrBlock") != "0.0.0.0/0":
        problems.append("the private subnets must reach the internet through the NAT gateway")
    nat = props(resources(t).get("NatGateway", {}))
    if nat.get("AllocationId") != {"Fn::GetAtt": ["NatEip", "AllocationId"]}:
        problems.append("the NAT gateway must use the NatEip Elastic IP")
    if (t.get("Outputs") or {}).get("OutboundSmtpIp", {}).get("Value") != {"Ref": "NatEip"}:
        problems.append("output OutboundSmtpIp must give the NAT gateway's Elastic IP")
    egress = props(resources(t).get("SendFunctionSecurityGroup", {})).get("SecurityGroupEgress") or []
    if not any(e.get("FromPort") == 25 and e.get("ToPort") == 25 for e in egress):
        problems.append("SendFunctionSecurityGroup must allow SMTP (25) out")
    return problems


def check_template_limits(t):
    problems = []
    size = os.path.getsize(TEMPLATE)
    if size > 1_000_000:
        problems.append(f"template is {size} bytes; CloudFormation takes at most 1 MB from S3")
    if len(resources(t)) > 500:
        problems.append(f"{len(resources(t))} resources; CloudFormation allows 500")
    if any("Transform" in k for k in t):
        problems.append("no transforms: moto silently skips SAM resources")
    return problems


def check_readme_documents_outputs(t):
    """The README's deploy section names every output and its setting."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    problems = []
    for key, out in (t.get("Outputs") or {}).items():
        if f"`{key}`" not in readme:
            problems.append(f"README.md does not document output {key}")
        m = re.search(r"-> ([A-Z0-9_]+)$", " ".join(str(out.get("Description", "")).split()))
        if m and f"| `{key}` | `{m.group(1)}` |" not in readme:
            problems.append(f"README.md does not map output {key} to {m.group(1)}")
    return problems


CHECKS = [v for k, v in sorted(globals().items()) if k.startswith("check_")]


# ------------------------------------------------------------ the tests ---

class TemplateTest(unittest.TestCase):
    """Every check passes on infra/template.yaml."""

    @classmethod
    def setUpClass(cls):
        cls.t = load()


def _make_test(check):
    def test(self):
        problems = check(copy.deepcopy(self.t))
        self.assertEqual(problems, [], "\n".join(problems))
    test.__doc__ = check.__doc__
    return test


for _check in CHECKS:
    setattr(TemplateTest, "test_" + _check.__name__[len("check_"):], _make_test(_check))


# One careless edit per check; each must make that check report a problem.
def _set(path, value):
    def mutate(t):
        node = t
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return mutate


def _delete(path):
    def mutate(t):
        node = t
        for k in path[:-1]:
            node = node[k]
        del node[path[-1]]
    return mutate


def _add_statement(role, statement):
    def mutate(t):
        t["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].append(statement)
    return mutate


R = "Resources"
P = "Properties"
MUTATIONS = {
    check_archive_bucket_object_lock: _set(
        [R, "ArchiveBucket", P, "ObjectLockConfiguration", "Rule", "DefaultRetention", "Mode"],
        "GOVERNANCE"),
    check_archive_bucket_versioning: _set(
        [R, "ArchiveBucket", P, "VersioningConfiguration", "Status"], "Suspended"),
    check_buckets_abort_incomplete_multipart: _delete(
        [R, "MessagesBucket", P, "LifecycleConfiguration"]),
    check_tables_pitr_on_demand: _set(
        [R, "IndexTable", P, "PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled"],
        False),
    check_queues_have_dead_letter_queues: _delete([R, "SendQueue", P, "RedrivePolicy"]),
    check_alarm_on_every_dead_letter_queue: _delete([R, "RouteDeadLetterAlarm"]),
    check_alarm_on_every_function: _set(
        [R, "DeliverErrorsAlarm", P, "Dimensions", 0, "Value"], {"Ref": "SendFunction"}),
    check_gateway_autoscaling: _delete([R, "GatewayMailboxScaling"]),
    check_load_balancer_ports_and_client_ips: _set(
        [R, "ImapsTargetGroup", P, "TargetGroupAttributes", 0, "Value"], "false"),
    check_event_sources_report_batch_item_failures: _set(
        [R, "ArchiveEventSource", P, "FunctionResponseTypes"], []),
    check_functions_runtime: _set([R, "RouteFunction", P, "Architectures"], ["arm64"]),
    check_scheduled_functions_run_hourly: _delete([R, "SweepInvokePermission", P, "SourceArn"]),
    check_iam_no_wildcards: _add_statement(
        "FilterFunctionRole", {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}),
    check_iam_exact_grants: _add_statement(
        "RouteFunctionRole", {"Effect": "Allow", "Action": "dynamodb:DeleteItem",
                              "Resource": {"Fn::GetAtt": ["IndexTable", "Arn"]}}),
    check_data_stores_retained: _set([R, "ArchiveBucket", "DeletionPolicy"], "Delete"),
    check_compute_is_gated: _delete([R, "NatGateway", "Condition"]),
    check_outputs_map_to_settings: _set(
        ["Outputs", "StratusDynamodbTable", "Description"], "Index table -> STRATUS_TABLE"),
    check_environment_uses_known_settings: _set(
        [R, "SendFunction", P, "Environment", "Variables", "STRATUS_SMTP_PORT"], "2525"),
    check_log_groups_retention: _delete([R, "GatewayLogGroup", P, "RetentionInDays"]),
    check_parameters_are_constrained: _delete(["Parameters", "MailHostname", "AllowedPattern"]),
    check_parameter_patterns: _set(["Parameters", "MaxMessageSize", "AllowedPattern"], ".*"),
    check_gateway_size_rules: _delete(["Rules", "GatewaySize2048"]),
    check_outbound_smtp_has_a_stable_address: _delete([R, "SendFunction", P, "VpcConfig"]),
    check_template_limits: _set(["Transform"], "AWS::Serverless-2016-10-31"),
    check_readme_documents_outputs: _set(
        ["Outputs", "StratusSmtpPort"],
        {"Description": "port -> STRATUS_OUTBOUND_SMTP_PORT", "Value": "25"}),
}


class ChecksCanFail(unittest.TestCase):
    """Each check reports a problem when the template is broken its way."""

    @classmethod
    def setUpClass(cls):
        cls.t = load()

    def test_every_check_has_a_mutation(self):
        self.assertEqual(sorted(c.__name__ for c in CHECKS),
                         sorted(c.__name__ for c in MUTATIONS))


def _make_mutation_test(check, mutate):
    def test(self):
        t = copy.deepcopy(self.t)
        mutate(t)
        self.assertNotEqual(check(t), [], f"{check.__name__} did not notice the mutation")
    return test


for _check, _mutate in MUTATIONS.items():
    setattr(ChecksCanFail, "test_" + _check.__name__[len("check_"):] + "_can_fail",
            _make_mutation_test(_check, _mutate))


if __name__ == "__main__":
    unittest.main()
