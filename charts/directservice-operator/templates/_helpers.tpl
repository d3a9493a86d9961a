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
{{- if and (gt (int .Values.replicas) 1) (not .Values.peering.enabled) -}}
{{- fail (printf "replicas is %d but peering.enabled is false: several replicas without peering would all reconcile the same DirectServices at once; set peering.enabled=true (active/standby) or replicas=1" (int .Values.replicas)) -}}
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
# patched when the port changes, deleted when their DirectService goes.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# The EndpointSlices it publishes, and other managers' slices that name a Service: watched
# (all with kubernetes.io/service-name but the built-in controller's), created, replaced
# with a resourceVersion precondition, deleted one by one or all at once on cleanup.
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list", "watch", "create", "update", "delete", "deletecollection"]
# The operator posts core/v1 Events on transitions (kopf's own event posting is off).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# Providers that need credentials read them from a named Secret: get only, never list.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end -}}

{{/* Rules for the kopf peering object of `kind` (kopfpeerings or clusterkopfpeerings). */}}
{{- define "directservice-operator.peeringRules" -}}
# kopf watches the peering objects to see its peers...
- apiGroups: ["kopf.dev"]
  resources: [{{ .plural | quote }}]
  verbs: ["list", "watch"]
# ...and merge-patches its own keep-alive into the status of ours (the main resource or the
# status subresource, depending on how the shared kopf CRD was installed).
- apiGroups: ["kopf.dev"]
  resources: [{{ .plural | quote }}, {{ printf "%s/status" .plural | quote }}]
  resourceNames: [{{ .name | quote }}]
  verbs: ["get", "patch"]
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
{{- if .Values.peering.enabled }}
- --peering={{ .Values.peering.name }}
{{- end }}
{{- end -}}
