{{/* Names */}}
{{- define "kube-intent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kube-intent.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kube-intent.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kube-intent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kube-intent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kube-intent.labels" -}}
helm.sh/chart: {{ include "kube-intent.chart" . }}
{{ include "kube-intent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kube-intent
{{- end }}

{{- define "kube-intent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kube-intent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kube-intent.serviceHost" -}}
{{- printf "%s.%s.svc" (include "kube-intent.fullname" .) .Release.Namespace }}
{{- end }}

{{- define "kube-intent.tlsSecretName" -}}
{{- if eq .Values.tls.mode "secret" }}
{{- .Values.tls.existingSecret }}
{{- else }}
{{- printf "%s-tls" (include "kube-intent.fullname" .) }}
{{- end }}
{{- end }}

{{- define "kube-intent.signingKeysSecretName" -}}
{{- default (printf "%s-signing-keys" (include "kube-intent.fullname" .)) .Values.signingKeys.existingSecret }}
{{- end }}

{{- define "kube-intent.image" -}}
{{- $tag := default .Chart.AppVersion .image.tag }}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/* 2 replicas with PostgreSQL (HA), 1 with SQLite, unless replicaCount is set. */}}
{{- define "kube-intent.replicas" -}}
{{- if kindIs "invalid" .Values.replicaCount }}
{{- if eq .Values.audit.backend "postgres" }}2{{ else }}1{{ end }}
{{- else }}
{{- int .Values.replicaCount }}
{{- end }}
{{- end }}

{{/*
Refuse configurations that would install something broken; each message says what to set.
Included by the Deployment and the webhook configurations.
*/}}
{{- define "kube-intent.validate" -}}
{{- $replicas := int (include "kube-intent.replicas" .) }}
{{- if and (eq .Values.audit.backend "sqlite") (gt $replicas 1) }}
{{- fail (printf "audit.backend=sqlite supports one replica (SQLite has a single writer on a ReadWriteOnce volume), but replicaCount is %d: use audit.backend=postgres with audit.postgres.existingSecret for several replicas, or set replicaCount=1" $replicas) }}
{{- end }}
{{- if and (eq .Values.audit.backend "postgres") (not .Values.audit.postgres.existingSecret) }}
{{- fail "audit.backend=postgres needs audit.postgres.existingSecret: the name of a Secret whose key audit.postgres.secretKey (default \"dsn\") holds the connection string" }}
{{- end }}
{{- if and (eq .Values.tls.mode "secret") (not .Values.tls.existingSecret) }}
{{- fail "tls.mode=secret needs tls.existingSecret: a kubernetes.io/tls Secret (tls.crt, tls.key) in the release namespace" }}
{{- end }}
{{- if .Values.webhook.url }}
{{- if not (hasPrefix "https://" .Values.webhook.url) }}
{{- fail (printf "webhook.url must start with https:// (the API server only calls webhooks over TLS), got %q" .Values.webhook.url) }}
{{- end }}
{{- if and (not .Values.tls.caBundle) (ne .Values.tls.mode "certManager") }}
{{- fail "webhook.url needs tls.caBundle: the PEM CA certificate that verifies the external webhook's serving certificate (--set-file tls.caBundle=ca.crt)" }}
{{- end }}
{{- end }}
{{- if lt (int .Values.webhook.gracefulShutdownSeconds) (int .Values.webhook.timeoutSeconds) }}
{{- fail (printf "webhook.gracefulShutdownSeconds (%d) must be at least webhook.timeoutSeconds (%d), so that reviews in flight finish" (int .Values.webhook.gracefulShutdownSeconds) (int .Values.webhook.timeoutSeconds)) }}
{{- end }}
{{- $needed := add (int .Values.preStopSleepSeconds) (int .Values.webhook.gracefulShutdownSeconds) }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + webhook.gracefulShutdownSeconds (%d)" (int .Values.terminationGracePeriodSeconds) (int $needed)) }}
{{- end }}
{{- end }}

{{/*
CEL: does resource name `k` match an accelerator pattern? Device counts ("name" / "prefix*") and
capacity resources ("~glob": selected by the literal text before their first "*"); "!"
exclusions are left to the webhook (over-selecting is safe, under-selecting is not). Every
deviceclass.resource.kubernetes.io/<class> name is selected: the webhook checks the class.
*/}}
{{- define "kube-intent.celResourceMatch" -}}
{{- $prefixes := list "deviceclass.resource.kubernetes.io/" }}
{{- $exact := list }}
{{- range .Values.accelerators.resources }}
{{- if hasPrefix "~" . }}
{{- if not (regexMatch "^~[A-Za-z0-9][-A-Za-z0-9_./*]*$" .) }}
{{- fail (printf "accelerators.resources: %q is not a capacity glob (~ then a resource name that may contain *)" .) }}
{{- end }}
{{- $body := trimPrefix "~" . }}
{{- if contains "*" $body }}
{{- $prefixes = append $prefixes (regexReplaceAll "\\*.*$" $body "") }}
{{- else }}
{{- $exact = append $exact $body }}
{{- end }}
{{- else if not (hasPrefix "!" .) }}
{{- if not (regexMatch "^[A-Za-z0-9][-A-Za-z0-9_./]*\\*?$" .) }}
{{- fail (printf "accelerators.resources: %q is not a resource name or a prefix ending in *" .) }}
{{- end }}
{{- if hasSuffix "*" . }}
{{- $prefixes = append $prefixes (trimSuffix "*" .) }}
{{- else }}
{{- $exact = append $exact . }}
{{- end }}
{{- end }}
{{- end }}
{{- /* Keep the expression short: drop what a shorter prefix already selects. */}}
{{- $terms := list }}
{{- range $p := uniq $prefixes }}
{{- $covered := false }}
{{- range $q := uniq $prefixes }}
{{- if and (ne $p $q) (hasPrefix $q $p) }}{{ $covered = true }}{{ end }}
{{- end }}
{{- if not $covered }}{{ $terms = append $terms (printf "k.startsWith('%s')" $p) }}{{ end }}
{{- end }}
{{- range $e := uniq $exact }}
{{- $covered := false }}
{{- range $q := uniq $prefixes }}
{{- if hasPrefix $q $e }}{{ $covered = true }}{{ end }}
{{- end }}
{{- if not $covered }}{{ $terms = append $terms (printf "k == '%s'" $e) }}{{ end }}
{{- end }}
{{- join " || " $terms }}
{{- end }}

{{/*
CEL list literal of plain names, each checked against `pattern` (so that no value can break out
of its quotes): ['A', 'B'].
*/}}
{{- define "kube-intent.celList" -}}
{{- $quoted := list }}
{{- range .values }}
{{- if not (regexMatch $.pattern .) }}
{{- fail (printf "%s: %q is not valid here (expected %s)" $.what . $.pattern) }}
{{- end }}
{{- $quoted = append $quoted (printf "'%s'" .) }}
{{- end }}
{{- printf "[%s]" (join ", " $quoted) }}
{{- end }}

{{/*
CEL: does the string .var match one of the globs in .values? An exact name, or (a glob with "*")
the literal text before its first "*": over-selecting is safe, the webhook applies the glob.
"false" for an empty list.
*/}}
{{- define "kube-intent.celGlobMatch" -}}
{{- $terms := list }}
{{- range .values }}
{{- if not (regexMatch $.pattern .) }}
{{- fail (printf "%s: %q is not valid here (expected %s)" $.what . $.pattern) }}
{{- end }}
{{- $literal := regexReplaceAll "\\*.*$" . "" }}
{{- if contains "*" . }}
{{- $terms = append $terms (printf "%s.startsWith('%s')" $.var $literal) }}
{{- else }}
{{- $terms = append $terms (printf "%s == '%s'" $.var .) }}
{{- end }}
{{- end }}
{{- if $terms }}{{ join " || " $terms }}{{ else }}false{{ end }}
{{- end }}

{{/*
CEL: does container `c` reach an accelerator? It requests or limits an accelerator resource, sets
an env var a runtime hook turns into device nodes (to a value other than the ones that expose
nothing: webhook/detect.py NO_DEVICE_ENV_VALUES; any valueFrom), or is privileged
(accelerators.privileged).
*/}}
{{- define "kube-intent.celContainer" -}}
{{- $a := .Values.accelerators -}}
{{- $match := include "kube-intent.celResourceMatch" . -}}
{{- $terms := list (printf "(has(c.resources) && ((has(c.resources.limits) && c.resources.limits.exists(k, %s)) || (has(c.resources.requests) && c.resources.requests.exists(k, %s))))" $match $match) }}
{{- if $a.deviceEnv }}
{{- $names := include "kube-intent.celList" (dict "values" $a.deviceEnv "what" "accelerators.deviceEnv" "pattern" "^[A-Za-z_][A-Za-z0-9_]*$") }}
{{- $terms = append $terms (printf "(has(c.env) && c.env.exists(e, e.name in %s && (has(e.valueFrom) || (has(e.value) && !(e.value in ['void', 'none'])))))" $names) }}
{{- end }}
{{- if $a.privileged }}
{{- $terms = append $terms "(has(c.securityContext) && has(c.securityContext.privileged) && c.securityContext.privileged)" }}
{{- end }}
{{- join " || " $terms }}
{{- end }}

{{/*
The matchCondition that keeps fail-closed webhooks off everything but governed pods: a pod is
sent when any container (regular, init or ephemeral: `kubectl debug` adds those) reaches an
accelerator (above), when it has DRA claims (spec.resourceClaims; the webhook resolves their
device classes), uses a GPU runtime class, mounts any hostPath (the webhook normalises the path
and checks it against accelerators.deviceHostPaths: "//dev/./nvidia0" is too easy to miss in
CEL), or carries a GPU-sharing or device annotation. Every list comes from .Values.accelerators,
which the webhook receives too.
*/}}
{{- define "kube-intent.celRequestsAccelerators" -}}
{{- $a := .Values.accelerators -}}
{{- $c := include "kube-intent.celContainer" . -}}
{{- $terms := list "(has(object.spec.resourceClaims) && size(object.spec.resourceClaims) > 0)" (printf "object.spec.containers.exists(c, %s)" $c) (printf "(has(object.spec.initContainers) && object.spec.initContainers.exists(c, %s))" $c) (printf "(has(object.spec.ephemeralContainers) && object.spec.ephemeralContainers.exists(c, %s))" $c) }}
{{- if $a.runtimeClasses }}
{{- $terms = append $terms (printf "(has(object.spec.runtimeClassName) && (%s))" (include "kube-intent.celGlobMatch" (dict "values" $a.runtimeClasses "what" "accelerators.runtimeClasses" "var" "object.spec.runtimeClassName" "pattern" "^[a-z0-9][-a-z0-9.*]*$"))) }}
{{- end }}
{{- if $a.deviceHostPaths }}
{{- $terms = append $terms "(has(object.spec.volumes) && object.spec.volumes.exists(v, has(v.hostPath)))" }}
{{- end }}
{{- $annotations := concat ($a.sharingAnnotations | default list) ($a.deviceAnnotations | default list) }}
{{- if $annotations }}
{{- $terms = append $terms (printf "(has(object.metadata.annotations) && object.metadata.annotations.exists(k, %s))" (include "kube-intent.celGlobMatch" (dict "values" $annotations "what" "accelerators.sharingAnnotations/deviceAnnotations" "var" "k" "pattern" "^[A-Za-z0-9][-A-Za-z0-9_./*]*$"))) }}
{{- end -}}
object != null && has(object.spec) && ({{ join " || " $terms }})
{{- end }}

{{/* namespaceSelector shared by both webhooks. */}}
{{- define "kube-intent.namespaceSelector" -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- range (uniq (concat (list "kube-system" .Release.Namespace) .Values.webhook.excludeNamespaces)) }}
      - {{ . | quote }}
      {{- end }}
{{- end }}

{{/* Accelerator resource patterns for the webhook (JSON, read by pydantic-settings). */}}
{{- define "kube-intent.acceleratorResourcesJSON" -}}
{{- .Values.accelerators.resources | toJson }}
{{- end }}

{{/*
The webhook's accelerator settings (webhook/settings.py accelerator_*), one env entry per
.Values.accelerators key: the same lists the matchConditions above are built from. For the
webhook container's env list: {{ include "kube-intent.acceleratorEnv" . | nindent 12 }}
*/}}
{{- define "kube-intent.acceleratorEnv" -}}
{{- $a := .Values.accelerators -}}
- name: KUBE_INTENT_ACCELERATOR_RESOURCES
  value: {{ $a.resources | toJson | quote }}
- name: KUBE_INTENT_ACCELERATOR_DEVICE_CLASSES
  value: {{ $a.deviceClasses | toJson | quote }}
- name: KUBE_INTENT_ACCELERATOR_RUNTIME_CLASSES
  value: {{ $a.runtimeClasses | default list | toJson | quote }}
- name: KUBE_INTENT_ACCELERATOR_DEVICE_ENV
  value: {{ $a.deviceEnv | default list | toJson | quote }}
- name: KUBE_INTENT_ACCELERATOR_DEVICE_HOST_PATHS
  value: {{ $a.deviceHostPaths | default list | toJson | quote }}
- name: KUBE_INTENT_ACCELERATOR_PRIVILEGED
  value: {{ $a.privileged | toJson | quote }}
- name: KUBE_INTENT_ACCELERATOR_SHARING_ANNOTATIONS
  value: {{ $a.sharingAnnotations | default list | toJson | quote }}
- name: KUBE_INTENT_ACCELERATOR_DEVICE_ANNOTATIONS
  value: {{ $a.deviceAnnotations | default list | toJson | quote }}
{{- end }}

{{/* clientConfig of a webhook: the in-cluster Service, or webhook.url for an external server. */}}
{{- define "kube-intent.clientConfig" -}}
{{- $root := .root -}}
{{- if $root.Values.webhook.url -}}
url: {{ printf "%s%s" (trimSuffix "/" $root.Values.webhook.url) .path | quote }}
{{- else -}}
service:
  name: {{ include "kube-intent.fullname" $root }}
  namespace: {{ $root.Release.Namespace }}
  path: {{ .path }}
  port: {{ int $root.Values.service.port }}
{{- end }}
{{- if .caBundle }}
caBundle: {{ .caBundle }}
{{- end }}
{{- end }}

{{/* The accelerator resource patterns for people (without the "!" and "~" entries). */}}
{{- define "kube-intent.acceleratorNames" -}}
{{- $names := list }}
{{- range .Values.accelerators.resources }}
{{- if not (or (hasPrefix "!" .) (hasPrefix "~" .)) }}
{{- $names = append $names . }}
{{- end }}
{{- end }}
{{- join ", " $names }}
{{- end }}

{{/*
CEL: an UPDATE changes the agent label or one of the annotations that identify and authorise a
governed pod (webhook/validate.py IMMUTABLE_ANNOTATIONS and the agent label).
*/}}
{{- define "kube-intent.celChangesGovernedFields" -}}
['kube-intent.io/intent', 'kube-intent.io/grant', 'kube-intent.io/intent-digest', 'kube-intent.io/spiffe-id'].exists(k, (has(object.metadata.annotations) && k in object.metadata.annotations ? object.metadata.annotations[k] : '') != (has(oldObject.metadata.annotations) && k in oldObject.metadata.annotations ? oldObject.metadata.annotations[k] : '')) || (has(object.metadata.labels) && 'kube-intent.io/agent' in object.metadata.labels ? object.metadata.labels['kube-intent.io/agent'] : '') != (has(oldObject.metadata.labels) && 'kube-intent.io/agent' in oldObject.metadata.labels ? oldObject.metadata.labels['kube-intent.io/agent'] : '')
{{- end }}
