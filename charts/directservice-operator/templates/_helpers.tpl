{{/*
Names and labels shared by every template.
*/}}

{{/* The chart name, truncated to the 63 characters a label value allows. */}}
{{- define "directservice-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: the release name alone when it already contains the chart name. */}}
{{- define "directservice-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "directservice-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the operator's pods; never change them after the first install. */}}
{{- define "directservice-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "directservice-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "directservice-operator.labels" -}}
helm.sh/chart: {{ include "directservice-operator.chart" . }}
{{ include "directservice-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: directservice-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "directservice-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "directservice-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "directservice-operator.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if hasPrefix "@" $tag -}}
{{- printf "%s%s" .Values.image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
Checks that a JSON schema cannot express clearly; they fail rendering with a plain message.
*/}}
{{- define "directservice-operator.validate" -}}
{{- $election := .Values.leaderElection -}}
{{- if and (gt (int .Values.replicas) 1) (not $election.enabled) -}}
{{- fail (printf "replicas is %d but leaderElection.enabled is false: several replicas without leader election would all reconcile the same DirectServices at once; set leaderElection.enabled=true or replicas=1" (int .Values.replicas)) -}}
{{- end -}}
{{- if and (gt (int .Values.sharding.shards) 1) (not $election.enabled) -}}
{{- fail (printf "sharding.shards is %d but leaderElection.enabled is false: replicas claim shards through their Leases, and a standalone replica serves everything; set leaderElection.enabled=true or sharding.shards=1" (int .Values.sharding.shards)) -}}
{{- end -}}
{{- if $election.enabled -}}
{{- if ge (float64 $election.renewDeadline) (float64 $election.leaseDuration) -}}
{{- fail (printf "leaderElection.renewDeadline (%v) must be below leaderElection.leaseDuration (%v): a holder that cannot renew must stop writing before another replica may take its Lease over" $election.renewDeadline $election.leaseDuration) -}}
{{- end -}}
{{- if ge (float64 $election.retryPeriod) (float64 $election.renewDeadline) -}}
{{- fail (printf "leaderElection.retryPeriod (%v) must be below leaderElection.renewDeadline (%v): a holder needs more than one attempt to renew before it stops" $election.retryPeriod $election.renewDeadline) -}}
{{- end -}}
{{- end -}}
{{- if eq (int .Values.healthPort) (int .Values.metrics.port) -}}
{{- fail (printf "healthPort and metrics.port are both %d; they must differ" (int .Values.healthPort)) -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled (not .Values.metrics.service.enabled) -}}
{{- fail "serviceMonitor.enabled needs metrics.service.enabled: the ServiceMonitor scrapes that Service" -}}
{{- end -}}
{{- end -}}

{{/*
The namespaced RBAC rules, shared by the ClusterRole (cluster-wide mode) and by the Role in
each watched namespace (namespaced mode). Derived from the calls the code makes
(operator/directservice/kube.py, handlers.py) and the ones kopf makes on its behalf.
*/}}
{{- define "directservice-operator.namespacedRules" -}}
# kopf lists and watches DirectServices, and merge-patches them to add and remove the
# directservice.io/cleanup finalizer and its progress annotations.
- apiGroups: ["directservice.io"]
  resources: ["directservices"]
  verbs: ["get", "list", "watch", "patch"]
# The operator writes status (conditions, endpoint counts) through the status subresource.
- apiGroups: ["directservice.io"]
  resources: ["directservices/status"]
  verbs: ["patch"]
# The headless Services it publishes: watched (label-selected) to keep an index, created,
# patched when the port changes, deleted when their DirectService goes; read (get) only
# when a create is refused as AlreadyExists, to tell its own from another's.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The EndpointSlices it publishes, and other managers' slices that name a Service: watched
# (all with kubernetes.io/service-name but the built-in controller's), created, replaced
# with a resourceVersion precondition, deleted one by one or all at once on cleanup.
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch", "create", "update", "delete", "deletecollection"]
# The operator posts core/v1 Events on transitions (kopf's own event posting is off).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# Providers that need credentials read them from a named Secret: get only, never list.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end -}}

{{/* Prefix of the operator's Lease names (--lease-name): one release, one set of Leases. */}}
{{- define "directservice-operator.leaseName" -}}
{{- include "directservice-operator.fullname" . -}}
{{- end -}}

{{/*
The Leases the replicas use, as a YAML list: <leaseName>-shard-<i> for each shard and, with
more than one shard, <leaseName>-members, which each replica heartbeats into.
*/}}
{{- define "directservice-operator.leaseNames" -}}
{{- $name := include "directservice-operator.leaseName" . -}}
{{- range $i := until (int .Values.sharding.shards) }}
- {{ printf "%s-shard-%d" $name $i }}
{{- end }}
{{- if gt (int .Values.sharding.shards) 1 }}
- {{ printf "%s-members" $name }}
{{- end }}
{{- end -}}

{{/* The operator's command-line arguments. */}}
{{- define "directservice-operator.args" -}}
- run
- --log-level={{ .Values.logLevel }}
- --log-format={{ .Values.logFormat }}
- --liveness=http://0.0.0.0:{{ .Values.healthPort }}/healthz
- --metrics-address=0.0.0.0:{{ .Values.metrics.port }}
{{- with .Values.minPollInterval }}
- --min-poll-interval={{ . }}
{{- end }}
{{- with .Values.healthChecks }}{{- with .inFlight }}
- --health-checks-in-flight={{ . }}
{{- end }}{{- end }}
{{- range .Values.watchNamespaces }}
- --namespace={{ . }}
{{- end }}
{{- range .Values.allowedDiscoveryHosts }}
- {{ printf "--allowed-host=%s" . | quote }}
{{- end }}
{{- range .Values.allowedDiscoveryCIDRs }}
- --allow-discovery-cidr={{ . }}
{{- end }}
{{- with .Values.clusterNetworks }}
{{- range .serviceCIDRs }}
- --service-cidr={{ . }}
{{- end }}
{{- range .podCIDRs }}
- --pod-cidr={{ . }}
{{- end }}
{{- range .deniedCIDRs }}
- --denied-cidr={{ . }}
{{- end }}
{{- end }}
{{- range $provider, $calls := .Values.rateBudgets }}
- --rate-budget={{ $provider }}={{ $calls }}
{{- end }}
{{- with .Values.leaderElection }}{{- if .enabled }}
- --leader-election
- --lease-name={{ include "directservice-operator.leaseName" $ }}
- --lease-namespace={{ $.Release.Namespace }}
- --lease-duration={{ .leaseDuration }}s
- --renew-deadline={{ .renewDeadline }}s
- --retry-period={{ .retryPeriod }}s
- --shards={{ $.Values.sharding.shards }}
{{- end }}{{- end }}
{{- end -}}
