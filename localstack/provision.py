#!/usr/bin/env python3
"""Deploy infra/template.yaml to an AWS emulator's CloudFormation and print
the Stratus settings taken from the stack outputs.

Called by localstack/up.sh (which supplies the venv with boto3). Create or
update, wait until complete, and fail loudly with the stack events if the
deployment fails. stdout carries only `export NAME=value` lines; everything
else goes to stderr.

With --dynamodb-endpoint (DynamoDB Local, which has no CloudFormation), it
also creates there every AWS::DynamoDB::Table of the template that is
missing, read from the template's own resource properties, and adds
STRATUS_DYNAMODB_ENDPOINT to the settings.
"""

import argparse
import json
import os
import re
import shlex
import sys
import tempfile
import time
import urllib.request

# Never let a developer's real AWS profile or credentials leak into talking to
# the emulator (a missing AWS_PROFILE would even make boto3 refuse to start).
for _name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
              "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL", "AWS_ROLE_ARN",
              "AWS_WEB_IDENTITY_TOKEN_FILE"):
    os.environ.pop(_name, None)
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

REGION = "us-east-1"
ACCESS_KEY = "test"
SECRET_KEY = "test"

# Stack output key -> environment variable. The stack outputs are the one
# source of truth for resource names.
OUTPUT_ENV = [
    ("StratusAwsRegion", "AWS_REGION"),
    ("StratusS3Bucket", "STRATUS_S3_BUCKET"),
    ("StratusArchiveBucket", "STRATUS_ARCHIVE_BUCKET"),
    ("StratusDynamodbTable", "STRATUS_DYNAMODB_TABLE"),
    ("StratusQueuePrefix", "STRATUS_QUEUE_PREFIX"),
]

OK_STATES = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"}
# A stack that never came up cannot be updated: delete it and create again.
RECREATE_STATES = {"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED",
                   "DELETE_FAILED", "REVIEW_IN_PROGRESS"}


def log(msg):
    print(f"provision: {msg}", file=sys.stderr, flush=True)


HINT = None  # set in main() when the engine is moto


def fail(cfn, stack, msg):
    log(f"error: {msg}")
    if cfn is not None and stack:
        dump_events(cfn, stack)
    if HINT:
        log(HINT)
    sys.exit(1)


def dump_events(cfn, stack):
    try:
        events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
    except ClientError as e:
        log(f"(no stack events: {e})")
        return
    log(f"stack events for {stack} (oldest first):")
    for ev in reversed(events):
        line = "  {ts}  {type:<32} {lid:<28} {status}".format(
            ts=ev.get("Timestamp"), type=ev.get("ResourceType", ""),
            lid=ev.get("LogicalResourceId", ""),
            status=ev.get("ResourceStatus", ""))
        reason = ev.get("ResourceStatusReason")
        if reason:
            line += f"  -- {reason}"
        print(line, file=sys.stderr)


def is_moto(endpoint):
    """moto's own API answers on /moto-api/; LocalStack's does not."""
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/config", timeout=5) as r:
            return r.status in (200, 201) and "lambda" in json.loads(r.read())
    except Exception:  # noqa: BLE001 - anything else means "not moto"
        return False


def describe(cfn, stack):
    try:
        stacks = cfn.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as e:
        if "does not exist" in str(e):
            return None
        raise
    live = [s for s in stacks if s["StackStatus"] != "DELETE_COMPLETE"]
    return live[0] if live else None


def wait(cfn, stack, timeout):
    """Wait until the stack leaves *_IN_PROGRESS; return the final stack."""
    deadline = time.monotonic() + timeout
    while True:
        s = describe(cfn, stack)
        status = s["StackStatus"] if s else "DELETE_COMPLETE"
        if not status.endswith("_IN_PROGRESS"):
            return s
        if time.monotonic() > deadline:
            fail(cfn, stack, f"stack {stack} still {status} after {timeout}s")
        time.sleep(0.5)


def apply_ignored_settings(args, outputs, params):
    """Apply the template settings that moto's CloudFormation silently drops.

    moto (5.2.x) creates the buckets and the table but ignores the buckets'
    VersioningConfiguration, ObjectLockConfiguration, LifecycleConfiguration
    and PublicAccessBlockConfiguration and the table's
    PointInTimeRecoverySpecification, although its S3 and DynamoDB APIs
    support all of them (Object Lock retention is even enforced). So set each
    one that is missing through the service API, so that the emulator behaves
    like the deployed template (e.g. archived objects cannot be deleted).
    Idempotent: only what is absent is set, and what is set is reported.
    Keep in step with infra/template.yaml.
    """
    kw = dict(endpoint_url=args.endpoint, region_name=REGION,
              aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}), **kw)
    ddb = boto3.client("dynamodb", **kw)
    messages = outputs["StratusS3Bucket"]
    archive = outputs["StratusArchiveBucket"]
    table = outputs["StratusDynamodbTable"]
    days = int(params.get("ArchiveRetentionDays") or 2555)

    def missing(call, code, **kw2):
        try:
            call(**kw2)
            return False
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == code:
                return True
            raise

    def applied(what):
        log(f"the emulator ignored {what} from the template; set it through the API")

    for bucket in (messages, archive):
        if missing(s3.get_bucket_lifecycle_configuration,
                   "NoSuchLifecycleConfiguration", Bucket=bucket):
            s3.put_bucket_lifecycle_configuration(
                Bucket=bucket,
                LifecycleConfiguration={"Rules": [{
                    "ID": "abort-incomplete-multipart-upload",
                    "Status": "Enabled",
                    "Filter": {},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                }]})
            applied(f"{bucket} lifecycle rule")
        if missing(s3.get_public_access_block,
                   "NoSuchPublicAccessBlockConfiguration", Bucket=bucket):
            s3.put_public_access_block(
                Bucket=bucket,
                PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True, "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
            applied(f"{bucket} public access block")

    if s3.get_bucket_versioning(Bucket=archive).get("Status") != "Enabled":
        s3.put_bucket_versioning(Bucket=archive,
                                 VersioningConfiguration={"Status": "Enabled"})
        applied(f"{archive} versioning")
    if missing(s3.get_object_lock_configuration,
               "ObjectLockConfigurationNotFoundError", Bucket=archive):
        s3.put_object_lock_configuration(
            Bucket=archive,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": days}},
            })
        applied(f"{archive} Object Lock (COMPLIANCE, {days} days)")

    pitr = ddb.describe_continuous_backups(TableName=table)[
        "ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription", {})
    if pitr.get("PointInTimeRecoveryStatus") != "ENABLED":
        ddb.update_continuous_backups(
            TableName=table,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
        applied(f"{table} point-in-time recovery")


# ------------------------------------------------- DynamoDB Local tables ---
#
# DynamoDB Local has no CloudFormation, so the tables are created through its
# API from the template's AWS::DynamoDB::Table resources: the template stays
# the one source of truth for names, keys and indexes.

class Unsupported(Exception):
    """A template construct this small resolver does not evaluate."""


_NO_VALUE = object()  # Ref AWS::NoValue: drop the enclosing key/item


def load_template(path):
    """Load a CloudFormation YAML template, short-form tags included.

    `!Sub x` becomes {"Fn::Sub": x}, `!Ref x` {"Ref": x}, `!GetAtt A.B`
    {"Fn::GetAtt": ["A", "B"]}, and so on (the long forms CloudFormation
    defines). JSON templates load too (JSON is YAML).
    """
    import yaml  # only needed here; the venv has PyYAML (see up.sh)

    class Loader(yaml.SafeLoader):
        pass

    def plain(loader, node):
        if isinstance(node, yaml.ScalarNode):
            return loader.construct_scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_mapping(node, deep=True)

    def long_form(name):
        return lambda loader, node: {name: plain(loader, node)}

    def get_att(loader, node):
        v = plain(loader, node)
        if isinstance(v, str):
            v = v.split(".", 1)
        return {"Fn::GetAtt": v}

    # Rules-only functions (Contains, EachMemberEquals, ...) included.
    for tag in ("And", "Base64", "Cidr", "Contains", "EachMemberEquals",
                "EachMemberIn", "Equals", "FindInMap", "GetAZs", "If",
                "ImportValue", "Join", "Length", "Not", "Or", "RefAll",
                "Select", "Split", "Sub", "ToJsonString", "Transform",
                "ValueOf", "ValueOfAll"):
        Loader.add_constructor(f"!{tag}", long_form(f"Fn::{tag}"))
    Loader.add_constructor("!Ref", long_form("Ref"))
    Loader.add_constructor("!Condition", long_form("Condition"))
    Loader.add_constructor("!GetAtt", get_att)

    with open(path, encoding="utf-8") as f:
        doc = yaml.load(f, Loader=Loader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a CloudFormation template")
    return doc


class Resolver:
    """Evaluates the intrinsic functions a table definition may use:
    Ref (parameters, pseudo parameters, AWS::NoValue), Fn::Sub, Fn::Join,
    Fn::Select, Fn::Split, Fn::If, Fn::FindInMap and the condition functions.
    Anything else (e.g. Fn::GetAtt, Ref to a resource) raises Unsupported."""

    def __init__(self, template, params, pseudo):
        self.template = template
        self.values = {}
        for name, spec in (template.get("Parameters") or {}).items():
            if isinstance(spec, dict) and "Default" in spec:
                self.values[name] = str(spec["Default"])
        self.values.update({k: v for k, v in params.items() if v is not None})
        self.values.update(pseudo)
        self.cond_defs = template.get("Conditions") or {}
        self.conds = {}

    def condition(self, name):
        if name not in self.conds:
            if name not in self.cond_defs:
                raise Unsupported(f"unknown condition {name}")
            self.conds[name] = bool(self.value(self.cond_defs[name]))
        return self.conds[name]

    def _sub(self, text, local):
        def var(m):
            name = m.group(1).strip()
            if name.startswith("!"):
                return "${" + name[1:] + "}"  # ${!Literal}
            if name in local:
                v = self.value(local[name])
                if v is _NO_VALUE or isinstance(v, (dict, list)):
                    raise Unsupported(f"${{{name}}} in Fn::Sub")
                return str(v)
            if name in self.values:
                return self.values[name]
            raise Unsupported(f"${{{name}}} in Fn::Sub")
        return re.sub(r"\$\{([^}]*)\}", var, text)

    def value(self, x):
        if isinstance(x, list):
            return [v for v in (self.value(i) for i in x) if v is not _NO_VALUE]
        if not isinstance(x, dict):
            return x
        if len(x) == 1:
            (fn, arg), = x.items()
            if fn == "Ref":
                if arg == "AWS::NoValue":
                    return _NO_VALUE
                if arg in self.values:
                    return self.values[arg]
                raise Unsupported(f"Ref {arg}")
            if fn == "Fn::Sub":
                if isinstance(arg, list):
                    return self._sub(arg[0], arg[1] if len(arg) > 1 else {})
                return self._sub(arg, {})
            if fn == "Fn::Join":
                return str(arg[0]).join(str(v) for v in self.value(arg[1]))
            if fn == "Fn::Select":
                return self.value(arg[1])[int(self.value(arg[0]))]
            if fn == "Fn::Split":
                return str(self.value(arg[1])).split(arg[0])
            if fn == "Fn::FindInMap":
                m, k1, k2 = (self.value(a) for a in arg[:3])
                return self.value(self.template["Mappings"][m][k1][k2])
            if fn == "Fn::If":
                return self.value(arg[1] if self.condition(arg[0]) else arg[2])
            if fn == "Condition":
                return self.condition(arg)
            if fn == "Fn::Equals":
                a, b = (self.value(v) for v in arg)
                return str(a) == str(b)
            if fn == "Fn::And":
                return all(self.value(v) for v in arg)
            if fn == "Fn::Or":
                return any(self.value(v) for v in arg)
            if fn == "Fn::Not":
                return not self.value(arg[0])
            if fn.startswith("Fn::"):
                raise Unsupported(fn)
        out = {}
        for k, v in x.items():
            v = self.value(v)
            if v is not _NO_VALUE:
                out[k] = v
        return out


# Table properties carried over to DynamoDB Local; the others (e.g.
# PointInTimeRecoverySpecification, SSESpecification, Tags) describe the
# managed service and do not change what the table does.
_CARRIED = {"TableName", "KeySchema", "AttributeDefinitions", "BillingMode",
            "ProvisionedThroughput", "GlobalSecondaryIndexes",
            "LocalSecondaryIndexes", "StreamSpecification",
            "TimeToLiveSpecification"}


def _throughput(spec):
    return {"ReadCapacityUnits": int(spec["ReadCapacityUnits"]),
            "WriteCapacityUnits": int(spec["WriteCapacityUnits"])}


def _projection(spec):
    out = {"ProjectionType": spec.get("ProjectionType", "ALL")}
    if spec.get("NonKeyAttributes"):
        out["NonKeyAttributes"] = list(spec["NonKeyAttributes"])
    return out


def create_table_request(props):
    """CreateTable parameters from resolved AWS::DynamoDB::Table properties."""
    req = {
        "TableName": props["TableName"],
        "KeySchema": [{"AttributeName": k["AttributeName"], "KeyType": k["KeyType"]}
                      for k in props["KeySchema"]],
        "AttributeDefinitions": [{"AttributeName": a["AttributeName"],
                                  "AttributeType": a["AttributeType"]}
                                 for a in props["AttributeDefinitions"]],
    }
    provisioned = props.get("BillingMode", "PROVISIONED") == "PROVISIONED"
    if provisioned:
        req["BillingMode"] = "PROVISIONED"
        req["ProvisionedThroughput"] = _throughput(props["ProvisionedThroughput"])
    else:
        req["BillingMode"] = "PAY_PER_REQUEST"
    gsis = []
    for g in props.get("GlobalSecondaryIndexes") or []:
        gsi = {"IndexName": g["IndexName"],
               "KeySchema": [{"AttributeName": k["AttributeName"], "KeyType": k["KeyType"]}
                             for k in g["KeySchema"]],
               "Projection": _projection(g.get("Projection") or {})}
        if provisioned:
            gsi["ProvisionedThroughput"] = _throughput(g["ProvisionedThroughput"])
        gsis.append(gsi)
    if gsis:
        req["GlobalSecondaryIndexes"] = gsis
    lsis = [{"IndexName": i["IndexName"],
             "KeySchema": [{"AttributeName": k["AttributeName"], "KeyType": k["KeyType"]}
                           for k in i["KeySchema"]],
             "Projection": _projection(i.get("Projection") or {})}
            for i in props.get("LocalSecondaryIndexes") or []]
    if lsis:
        req["LocalSecondaryIndexes"] = lsis
    stream = props.get("StreamSpecification") or {}
    if stream.get("StreamViewType"):
        req["StreamSpecification"] = {"StreamEnabled": True,
                                      "StreamViewType": stream["StreamViewType"]}
    return req


def _shape(desc):
    """What must agree between an existing table and the template."""
    def keys(ks):
        return sorted((k["AttributeName"], k["KeyType"]) for k in ks)
    return {
        "KeySchema": keys(desc["KeySchema"]),
        "GlobalSecondaryIndexes": sorted(
            (g["IndexName"], tuple(keys(g["KeySchema"])))
            for g in desc.get("GlobalSecondaryIndexes") or []),
        "LocalSecondaryIndexes": sorted(
            (i["IndexName"], tuple(keys(i["KeySchema"])))
            for i in desc.get("LocalSecondaryIndexes") or []),
    }


def wait_dynamodb(ddb, endpoint, timeout, pidfile, logfile):
    """Wait until DynamoDB answers ListTables. Fails early if the process
    that up.sh started (pidfile) has exited."""
    deadline = time.monotonic() + timeout
    t0 = time.monotonic()
    waited = False
    while True:
        if pidfile:
            try:
                with open(pidfile, encoding="utf-8") as f:
                    pid = int(f.read().strip())
                os.kill(pid, 0)
                with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                        raise ProcessLookupError(pid)  # exited, not reaped yet
            except (OSError, ValueError, IndexError):
                log(f"DynamoDB Local exited; last lines of {logfile}:")
                try:
                    with open(logfile, encoding="utf-8", errors="replace") as f:
                        sys.stderr.writelines(f.readlines()[-20:])
                except OSError:
                    pass
                fail(None, None, "DynamoDB Local did not start")
        try:
            ddb.list_tables(Limit=1)
            if waited:
                log(f"DynamoDB answers on {endpoint} "
                    f"(waited {time.monotonic() - t0:.1f}s)")
            return
        except Exception as e:  # noqa: BLE001 - connection refused, 5xx, ...
            last = e
        if time.monotonic() > deadline:
            fail(None, None, f"DynamoDB did not answer on {endpoint} within "
                 f"{timeout}s (last error: {last})")
        if not waited:
            log(f"waiting for DynamoDB on {endpoint}")
            waited = True
        time.sleep(0.3)


def ensure_dynamodb_tables(args, template_path, stack, outputs):
    """Create in the DynamoDB endpoint every AWS::DynamoDB::Table of the
    template that is missing there. Idempotent; an existing table whose keys
    or indexes differ from the template is an error (DynamoDB Local keeps its
    tables in memory, so a restart gives a fresh, matching one)."""
    global HINT
    HINT = None  # the moto hint does not apply here
    if args.dynamodb_from_env:
        HINT = ("this DynamoDB endpoint came from STRATUS_DYNAMODB_ENDPOINT "
                "(external mode); unset it to let the main endpoint serve "
                "DynamoDB too")
    ddb = boto3.client(
        "dynamodb", endpoint_url=args.dynamodb_endpoint, region_name=REGION,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        config=Config(connect_timeout=2, read_timeout=3,
                      retries={"total_max_attempts": 1}))
    wait_dynamodb(ddb, args.dynamodb_endpoint, args.dynamodb_wait,
                  args.dynamodb_pidfile, args.dynamodb_log)
    ddb = boto3.client(
        "dynamodb", endpoint_url=args.dynamodb_endpoint, region_name=REGION,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}))

    template = load_template(template_path)
    params = {p["ParameterKey"]: p.get("ParameterValue")
              for p in stack.get("Parameters", [])}
    arn = stack.get("StackId", "").split(":")
    pseudo = {
        "AWS::Region": REGION,
        "AWS::AccountId": arn[4] if len(arn) > 5 else "123456789012",
        "AWS::StackName": stack["StackName"],
        "AWS::StackId": stack.get("StackId", ""),
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }
    res = Resolver(template, params, pseudo)

    names = []
    for lid, r in (template.get("Resources") or {}).items():
        if not isinstance(r, dict) or r.get("Type") != "AWS::DynamoDB::Table":
            continue
        try:
            if "Condition" in r and not res.condition(r["Condition"]):
                log(f"table {lid}: condition {r['Condition']} is false; skipped")
                continue
            props = res.value(r.get("Properties") or {})
            if not props.get("TableName"):
                raise Unsupported("no TableName (a generated name cannot be "
                                  "reproduced outside CloudFormation)")
            req = create_table_request(props)
        except (Unsupported, KeyError, IndexError, TypeError, ValueError) as e:
            fail(None, None, f"cannot read table {lid} from {template_path}: "
                 f"{type(e).__name__}: {e}")
        name = req["TableName"]
        names.append(name)
        ignored = sorted(set(props) - _CARRIED)
        try:
            desc = ddb.describe_table(TableName=name)["Table"]
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            desc = None
        if desc is None:
            ddb.create_table(**req)
            log(f"created table {name} in DynamoDB at {args.dynamodb_endpoint} "
                f"(from {lid}; not applicable there: {', '.join(ignored) or 'none'})")
        else:
            want, have = _shape(req), _shape(desc)
            if want != have:
                fail(None, None,
                     f"table {name} in DynamoDB at {args.dynamodb_endpoint} differs "
                     f"from {lid} in the template: has {have}, template says {want}. "
                     "DynamoDB Local keeps tables in memory: `localstack/down.sh && "
                     "localstack/up.sh` recreates it")
            log(f"table {name} exists in DynamoDB at {args.dynamodb_endpoint}; reusing it")
        deadline = time.monotonic() + 60
        while True:
            desc = ddb.describe_table(TableName=name)["Table"]
            busy = [desc["TableStatus"]] + [
                g.get("IndexStatus") for g in desc.get("GlobalSecondaryIndexes") or []]
            if all(s == "ACTIVE" for s in busy):
                break
            if time.monotonic() > deadline:
                fail(None, None, f"table {name} still {busy} after 60s")
            time.sleep(0.3)
        ttl = props.get("TimeToLiveSpecification") or {}
        if str(ttl.get("Enabled", "")).lower() == "true" and ttl.get("AttributeName"):
            cur = ddb.describe_time_to_live(TableName=name)[
                "TimeToLiveDescription"]
            if cur.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
                ddb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"Enabled": True,
                                             "AttributeName": ttl["AttributeName"]})
                log(f"table {name}: time to live on {ttl['AttributeName']}")

    table = outputs["StratusDynamodbTable"]
    if table not in names:
        fail(None, None, f"the stack output StratusDynamodbTable is {table}, but "
             f"the template's tables resolve to {names}")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--stack", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--template", required=True)
    ap.add_argument("--env-file", required=True)
    ap.add_argument("--timeout", type=int, default=600,
                    help="seconds to wait for the stack (default 600)")
    ap.add_argument("--dynamodb-endpoint",
                    help="serve DynamoDB from this endpoint instead (DynamoDB "
                         "Local): create the template's tables there and "
                         "print STRATUS_DYNAMODB_ENDPOINT")
    ap.add_argument("--dynamodb-wait", type=int, default=60,
                    help="seconds to wait for --dynamodb-endpoint to answer")
    ap.add_argument("--dynamodb-pidfile",
                    help="pid file of the DynamoDB Local that up.sh started "
                         "(stop waiting early when it has exited)")
    ap.add_argument("--dynamodb-log", default="",
                    help="its log file (tail shown when it exited)")
    ap.add_argument("--dynamodb-from-env", action="store_true",
                    help="--dynamodb-endpoint came from the user's "
                         "STRATUS_DYNAMODB_ENDPOINT (only for error hints)")
    args = ap.parse_args()

    with open(args.template, encoding="utf-8") as f:
        body = f.read()
    params = {"Prefix": args.prefix, "DeployCompute": "false"}
    cfn_params = [{"ParameterKey": k, "ParameterValue": v}
                  for k, v in params.items()]

    cfn = boto3.client(
        "cloudformation", endpoint_url=args.endpoint, region_name=REGION,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}))
    stack = args.stack
    caps = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]

    global HINT
    moto = is_moto(args.endpoint)
    if moto:
        HINT = ("moto keeps its state in memory only: `localstack/down.sh && "
                "localstack/up.sh` starts from a clean emulator")

    t0 = time.monotonic()
    s = describe(cfn, stack)
    stuck = False
    if s and s["StackStatus"].endswith("_IN_PROGRESS"):
        if moto:
            # moto deploys synchronously inside the API call; a resource that
            # raised leaves the stack in *_IN_PROGRESS for good.
            log(f"stack {stack} is stuck in {s['StackStatus']} (a failed moto deployment)")
            stuck = True
        else:
            log(f"stack {stack} is {s['StackStatus']}; waiting")
            s = wait(cfn, stack, args.timeout)
    if s and (stuck or s["StackStatus"] in RECREATE_STATES):
        log(f"stack {stack} is {s['StackStatus']}; deleting it to start over")
        dump_events(cfn, stack)
        cfn.delete_stack(StackName=stack)
        s = wait(cfn, stack, args.timeout)
        if s:
            fail(cfn, stack, f"could not delete stack {stack} ({s['StackStatus']})")

    if s is None:
        log(f"creating stack {stack} (Prefix={args.prefix}) on {args.endpoint}")
        try:
            cfn.create_stack(StackName=stack, TemplateBody=body,
                             Parameters=cfn_params, Capabilities=caps)
        except ClientError as e:
            fail(cfn, stack if describe(cfn, stack) else None,
                 f"create_stack refused: {e}")
        verb = "create"
    elif s["StackStatus"] not in OK_STATES:
        fail(cfn, stack, f"stack {stack} is {s['StackStatus']}; not touching it")
    else:
        # Only update when something changed: some emulators rebuild
        # resources on a no-op update instead of answering "No updates".
        try:
            deployed_body = cfn.get_template(StackName=stack)["TemplateBody"]
        except ClientError:
            deployed_body = None
        deployed_params = {p["ParameterKey"]: p.get("ParameterValue")
                           for p in s.get("Parameters", [])}
        same_params = all(deployed_params.get(k) == v for k, v in params.items())
        if deployed_body == body and same_params:
            log(f"stack {stack} is {s['StackStatus']} and up to date; reusing it")
            verb = None
        else:
            log(f"updating stack {stack} (template or parameters changed)")
            try:
                cfn.update_stack(StackName=stack, TemplateBody=body,
                                 Parameters=cfn_params, Capabilities=caps)
                verb = "update"
            except ClientError as e:
                if "No updates are to be performed" in str(e):
                    log("no updates to perform")
                    verb = None
                else:
                    fail(cfn, stack, f"update_stack refused: {e}")

    if verb:
        s = wait(cfn, stack, args.timeout)
        status = s["StackStatus"] if s else "DELETE_COMPLETE"
        want = "CREATE_COMPLETE" if verb == "create" else "UPDATE_COMPLETE"
        if status != want:
            fail(cfn, stack, f"{verb} of stack {stack} ended in {status}")
        log(f"stack {stack} {status} in {time.monotonic() - t0:.1f}s")

    outputs = {o["OutputKey"]: o["OutputValue"] for o in s.get("Outputs", [])}
    missing = [k for k, _ in OUTPUT_ENV if not outputs.get(k)]
    if missing:
        fail(cfn, stack, f"stack {stack} lacks outputs {missing}; has {sorted(outputs)}")
    if outputs["StratusAwsRegion"] != REGION:
        fail(cfn, stack, f"stack region {outputs['StratusAwsRegion']} != {REGION}")

    params_now = {p["ParameterKey"]: p.get("ParameterValue")
                  for p in s.get("Parameters", [])}
    apply_ignored_settings(args, outputs, params_now)
    if args.dynamodb_endpoint:
        ensure_dynamodb_tables(args, args.template, s, outputs)

    env = [
        ("STRATUS_BACKEND", "aws"),
        ("STRATUS_AWS_ENDPOINT", args.endpoint),
    ]
    if args.dynamodb_endpoint:
        env.append(("STRATUS_DYNAMODB_ENDPOINT", args.dynamodb_endpoint))
    env += [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
    ] + [(var, outputs[key]) for key, var in OUTPUT_ENV]
    text = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env)

    env_dir = os.path.dirname(os.path.abspath(args.env_file))
    os.makedirs(env_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=env_dir, prefix=".env.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, args.env_file)
    log(f"settings written to {args.env_file}")
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
